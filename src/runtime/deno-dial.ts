import { UpstreamError } from '../core/upstream-error.ts'
import type { UpstreamTls } from '../core/host.ts'
import type { Dial, Wire, WireEvents } from './h1-client.ts'
import { oncePerUpstreamTls, readUpstreamTls } from './upstream-tls.ts'

/** Deno's TCP and TLS connections, as far as the dialer uses them. */
interface DenoConn {
  read(buffer: Uint8Array): Promise<number | null>
  write(bytes: Uint8Array): Promise<number>
  close(): void
  handshake?(): Promise<unknown>
}

declare const Deno: {
  connect(options: { hostname: string; port: number; signal?: AbortSignal }): Promise<DenoConn>
  connectTls(options: { hostname: string; port: number; caCerts?: string[]; cert?: string; key?: string }): Promise<DenoConn>
}

/** Each connection reads into its own buffer: the client copies whatever it keeps (h1-client.ts). */
const READ_BYTES = 64 * 1024

/** Deno's client TLS options; Deno has no server name option (server_name is refused at load on Deno). */
const denoClientTls = oncePerUpstreamTls((tls) => {
  const { ca, cert, key } = readUpstreamTls(tls)
  return { ...(ca === undefined ? {} : { caCerts: [ca] }), ...(cert === undefined ? {} : { cert, key }) }
})

/** A Deno connection as a Wire: a read loop that stops while paused, writes until all bytes are taken. */
class DenoWire implements Wire {
  readonly #conn: DenoConn
  readonly #events: WireEvents
  #paused: { promise: Promise<void>; resume: () => void } | undefined
  #closed = false

  constructor(conn: DenoConn, events: WireEvents) {
    this.#conn = conn
    this.#events = events
    void this.#readLoop()
  }

  async #readLoop(): Promise<void> {
    const buffer = new Uint8Array(READ_BYTES)
    let error: unknown
    try {
      for (;;) {
        if (this.#paused !== undefined) await this.#paused.promise
        if (this.#closed) return
        const read = await this.#conn.read(buffer)
        if (read === null) break
        this.#events.data(buffer.subarray(0, read))
      }
    } catch (failure) {
      error = failure
    }
    if (this.#closed) return
    this.destroy()
    this.#events.closed(error)
  }

  async write(bytes: Uint8Array): Promise<void> {
    try {
      while (bytes.byteLength > 0) bytes = bytes.subarray(await this.#conn.write(bytes))
    } catch (error) {
      throw new UpstreamError('reset', `the upstream connection failed while the request was being sent: ${(error as Error).message}`)
    }
  }

  pause(): void {
    if (this.#paused !== undefined) return
    let resume!: () => void
    const promise = new Promise<void>((resolve) => (resume = resolve))
    this.#paused = { promise, resume }
  }

  resume(): void {
    const paused = this.#paused
    this.#paused = undefined
    paused?.resume()
  }

  destroy(): void {
    if (this.#closed) return
    this.#closed = true
    this.resume()
    try {
      this.#conn.close()
    } catch {
      // already closed by the peer
    }
  }
}

/** Dials with Deno.connect or Deno.connectTls; with TLS the deadline covers the handshake too. */
export const denoDial: Dial = async (target, events, deadlineMs) => {
  const where = `${target.host}:${target.port}`
  const abort = new AbortController()
  let timedOut = false
  const timer =
    deadlineMs > 0 ?
      setTimeout(() => {
        timedOut = true
        abort.abort()
      }, deadlineMs)
    : undefined
  let connecting: Promise<DenoConn> | undefined
  try {
    connecting = open(target.host, target.port, target.tls, abort.signal)
    const conn = await Promise.race([connecting, new Promise<never>((_, reject) => abort.signal.addEventListener('abort', () => reject(abort.signal.reason)))])
    return new DenoWire(conn, events)
  } catch (error) {
    // A connect that completes after its deadline is closed, never used.
    void connecting?.then((late) => late.close()).catch(() => {})
    if (timedOut) throw new UpstreamError('connect-timeout', `no connection to ${where} within ${deadlineMs}ms`)
    throw new UpstreamError('connect-failure', `cannot connect to ${where}: ${(error as Error)?.message ?? error}`)
  } finally {
    clearTimeout(timer)
  }
}

async function open(hostname: string, port: number, tls: UpstreamTls | undefined, signal: AbortSignal): Promise<DenoConn> {
  if (tls === undefined) return Deno.connect({ hostname, port, signal })
  const conn = await Deno.connectTls({ hostname, port, ...(Object.keys(tls).length === 0 ? {} : denoClientTls(tls)) })
  try {
    await conn.handshake!()
  } catch (error) {
    conn.close()
    throw error
  }
  if (signal.aborted) conn.close()
  return conn
}
