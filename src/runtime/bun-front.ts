import type { ServeOptions } from '../core/host.ts'
import { allClosed, FIRST_REQUEST_GRACE_MS, HeadDeadline, RELAY_DRAIN_MS, requestTimeoutAnswer, until, type FrontedConnections } from './connection-front.ts'
import type { PlainServer } from './rebinding-server.ts'

/** Bun's TCP socket, as far as the front uses it; `data` is the relay it belongs to. */
interface BunSocket {
  data: Relay
  remoteAddress: string
  localPort: number
  write(data: Uint8Array | string): number
  end(data?: string): void
  terminate(): void
  pause(): void
  resume(): void
}

declare const Bun: {
  listen(options: { hostname: string; port: number; reusePort?: boolean; tls?: Record<string, unknown>; socket: Record<string, unknown> }): { port: number; stop(closeActiveConnections?: boolean): void }
  connect(options: { hostname: string; port: number; data: Relay; socket: Record<string, unknown> }): Promise<BunSocket>
}

/** One side's bytes the other could not take yet, in order; while any wait, the sending side is paused. */
class Backlog {
  chunks: Uint8Array[] = []

  /** Writes what the socket takes now and keeps the rest; false if some is kept. */
  send(to: BunSocket, chunk: Uint8Array): boolean {
    if (this.chunks.length > 0) {
      this.chunks.push(chunk.slice())
      return false
    }
    const written = to.write(chunk)
    if (written >= chunk.byteLength) return true
    this.chunks.push(chunk.slice(Math.max(written, 0)))
    return false
  }

  /** The socket drained: writes what it takes; true once nothing is kept. */
  flush(to: BunSocket): boolean {
    while (this.chunks.length > 0) {
      const next = this.chunks[0]!
      const written = to.write(next)
      if (written < next.byteLength) {
        this.chunks[0] = next.subarray(Math.max(written, 0))
        return false
      }
      this.chunks.shift()
    }
    return true
  }
}

/** A client connection and its connection to the server behind, on Bun's own sockets. */
class Relay {
  readonly client: BunSocket
  inner: BunSocket | undefined
  readonly toInner = new Backlog()
  readonly toClient = new Backlog()
  deadline: HeadDeadline | undefined
  innerClosed = false
  closed = false
  expired = false
  /** Whether the server behind has been given bytes of a request (so a stopping server answers it rather than dropping it). */
  sentAny = false
  readonly acceptedAt = Date.now()

  constructor(client: BunSocket) {
    this.client = client
  }

  /** Safe to stop the server behind: its first request has reached it, it is gone, or it waited long enough. */
  handedOver(now: number): boolean {
    return this.closed || (this.sentAny && this.toInner.chunks.length === 0) || now - this.acceptedAt > FIRST_REQUEST_GRACE_MS
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.deadline?.stop()
    if (!this.expired) this.client.terminate()
    this.inner?.terminate()
  }
}

const clientHandlers = (clients: Map<number, string>, innerPort: number, deadlineMs: number, open: Set<Relay>) => ({
  open(client: BunSocket) {
    const relay = new Relay(client)
    client.data = relay
    open.add(relay)
    if (deadlineMs > 0) {
      relay.deadline = new HeadDeadline(deadlineMs, (answer) => {
        relay.expired = true
        if (answer) client.end(requestTimeoutAnswer())
        else client.terminate()
        relay.inner?.terminate()
      })
    }
    const remoteAddress = client.remoteAddress
    Bun.connect({ hostname: '127.0.0.1', port: innerPort, data: relay, socket: innerHandlers(clients, remoteAddress) }).catch(() => relay.close())
  },
  data(client: BunSocket, chunk: Uint8Array) {
    const relay = client.data
    relay.deadline?.fromClient(chunk)
    relay.sentAny = true
    if (relay.inner === undefined) {
      relay.toInner.chunks.push(chunk.slice())
      client.pause()
    } else if (!relay.toInner.send(relay.inner, chunk)) client.pause()
  },
  drain(client: BunSocket) {
    const relay = client.data
    if (!relay.toClient.flush(client)) return
    if (relay.innerClosed) client.end()
    else relay.inner?.resume()
  },
  close(client: BunSocket) {
    open.delete(client.data)
    client.data.close()
  },
  error() {},
})

const innerHandlers = (clients: Map<number, string>, remoteAddress: string) => ({
  open(inner: BunSocket) {
    const relay = inner.data
    if (relay.closed) return void inner.terminate()
    relay.inner = inner
    clients.set(inner.localPort, remoteAddress)
    if (relay.toInner.flush(inner)) relay.client.resume()
  },
  data(inner: BunSocket, chunk: Uint8Array) {
    const relay = inner.data
    relay.deadline?.fromServer()
    if (!relay.toClient.send(relay.client, chunk)) inner.pause()
  },
  drain(inner: BunSocket) {
    const relay = inner.data
    if (relay.toInner.flush(inner)) relay.client.resume()
  },
  close(inner: BunSocket) {
    const relay = inner.data
    clients.delete(inner.localPort)
    relay.innerClosed = true
    // What the server said last still goes out before the client's connection closes.
    if (relay.toClient.chunks.length === 0 && !relay.closed) relay.client.end()
  },
  error() {},
})

/**
 * connection-front.ts on Bun's own sockets, with Bun's own TLS when `tls` is given (Bun.serve's
 * options): `node:net` under Bun costs about twice as much per relayed request (docs/runtimes.md),
 * and a `node:tls` front closing at a certificate rotation resets connections still queued to it.
 */
export async function bunFront(
  options: ServeOptions,
  startInner: (options: ServeOptions, connections: FrontedConnections) => Promise<PlainServer>,
  tls?: Record<string, unknown>,
): Promise<PlainServer> {
  const clients = new Map<number, string>()
  const inner = await startInner({ host: '127.0.0.1', port: 0, requestTimeoutMs: options.requestTimeoutMs }, { clientOf: (port) => clients.get(port) })
  const open = new Set<Relay>()
  const front = Bun.listen({
    hostname: options.host,
    port: options.port,
    ...(options.reusePort === true ? { reusePort: true } : {}),
    ...(tls === undefined ? {} : { tls }),
    socket: clientHandlers(clients, inner.port, options.headersTimeoutMs ?? 0, open),
  })
  return {
    host: options.host,
    port: front.port,
    async close() {
      front.stop()
      await until(() => {
        const now = Date.now()
        for (const relay of open) if (!relay.handedOver(now)) return false
        return true
      }, FIRST_REQUEST_GRACE_MS + 100)
      await inner.close()
      // The server behind has answered and closes its connections: what it said last reaches the clients first.
      await allClosed(open, RELAY_DRAIN_MS)
      for (const relay of open) relay.close()
    },
    closeWebSockets: () => inner.closeWebSockets(),
  }
}
