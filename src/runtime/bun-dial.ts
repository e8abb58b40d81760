import { UpstreamError } from '../core/upstream-error.ts'
import type { UpstreamTls } from '../core/host.ts'
import type { Dial, Wire, WireEvents } from './h1-client.ts'
import { oncePerUpstreamTls, readUpstreamTls } from './upstream-tls.ts'

/** Bun's TCP socket, as far as the dialer uses it. */
interface BunSocket {
  write(data: Uint8Array): number
  pause(): void
  resume(): void
  end(): void
  terminate(): void
}

declare const Bun: {
  connect(options: { hostname: string; port: number; tls?: Record<string, unknown>; socket: Record<string, unknown> }): Promise<BunSocket>
}

/** Bun's client TLS options: `serverName` is the SNI and the name verified. */
export const bunClientTls = oncePerUpstreamTls((tls) => ({ ...readUpstreamTls(tls), rejectUnauthorized: true }))

const SYSTEM_TRUST = { rejectUnauthorized: true }

/** A Bun socket as a Wire: writes Bun could not take at once wait for its drain, in order. */
class BunWire implements Wire {
  socket: BunSocket | undefined
  #queue: { bytes: Uint8Array; done: () => void }[] = []
  #failed: unknown

  write(bytes: Uint8Array): Promise<void> | void {
    if (this.#failed !== undefined) return Promise.reject(this.#failed)
    if (this.#queue.length === 0) {
      const written = this.socket!.write(bytes)
      if (written === bytes.byteLength) return
      bytes = bytes.subarray(Math.max(written, 0))
    }
    return new Promise<void>((done) => this.#queue.push({ bytes, done }))
  }

  drained(): void {
    while (this.#queue.length > 0) {
      const next = this.#queue[0]!
      const written = this.socket!.write(next.bytes)
      if (written < next.bytes.byteLength) {
        next.bytes = next.bytes.subarray(Math.max(written, 0))
        return
      }
      this.#queue.shift()
      next.done()
    }
  }

  /** The socket is gone: writes still waiting never complete, later ones reject. */
  gone(): void {
    this.#failed = new UpstreamError('reset', 'the upstream connection closed while the request was being sent')
    this.#queue = []
  }

  pause(): void {
    this.socket?.pause()
  }

  resume(): void {
    this.socket?.resume()
  }

  destroy(): void {
    this.socket?.terminate()
  }
}

/** Dials with Bun.connect; with TLS the connect lasts until the handshake is done, and the deadline covers it. */
export const bunDial: Dial = (target, events: WireEvents, deadlineMs) =>
  new Promise<Wire>((resolve, reject) => {
    const wire = new BunWire()
    const tls = target.tls
    let state: 'connecting' | 'open' | 'failed' = 'connecting'
    let timer: ReturnType<typeof setTimeout> | undefined
    const fail = (error: UpstreamError) => {
      if (state !== 'connecting') return
      state = 'failed'
      clearTimeout(timer)
      wire.socket?.terminate()
      reject(error)
    }
    const ready = () => {
      if (state !== 'connecting') return
      state = 'open'
      clearTimeout(timer)
      resolve(wire)
    }
    const where = `${target.host}:${target.port}`
    if (deadlineMs > 0) timer = setTimeout(() => fail(new UpstreamError('connect-timeout', `no connection to ${where} within ${deadlineMs}ms`)), deadlineMs)
    const closed = (error?: unknown) => {
      wire.gone()
      if (state === 'connecting') return fail(new UpstreamError('connect-failure', `the connection to ${where} closed before it was ready`))
      if (state === 'open') events.closed(error)
    }
    Bun.connect({
      hostname: target.host,
      port: target.port,
      ...(tls === undefined ? {} : { tls: tlsOptions(tls) }),
      socket: {
        open(socket: BunSocket) {
          wire.socket = socket
          if (tls === undefined) ready()
        },
        handshake(socket: BunSocket, success: boolean, authorizationError: Error | null) {
          wire.socket = socket
          if (success && authorizationError === null) return ready()
          fail(new UpstreamError('connect-failure', `TLS handshake with ${where} failed: ${authorizationError?.message ?? 'refused'}`))
        },
        data: (_socket: BunSocket, chunk: Uint8Array) => events.data(chunk),
        drain: () => wire.drained(),
        end: (socket: BunSocket) => {
          closed()
          socket.end()
        },
        close: (_socket: BunSocket, error?: Error) => closed(error),
        error: (_socket: BunSocket, error: Error) => closed(error),
        connectError: (_socket: BunSocket, error: Error) => fail(new UpstreamError('connect-failure', `cannot connect to ${where}: ${error.message}`)),
      },
    }).then(
      (socket) => {
        wire.socket = socket
        if (state === 'failed') socket.terminate() // the deadline passed first
      },
      (error: Error) => fail(new UpstreamError('connect-failure', `cannot connect to ${where}: ${error.message}`)),
    )
  })

function tlsOptions(tls: UpstreamTls): Record<string, unknown> {
  return Object.keys(tls).length === 0 ? SYSTEM_TRUST : bunClientTls(tls)
}
