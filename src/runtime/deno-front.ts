import type { ServeOptions } from '../core/host.ts'
import { allClosed, HeadDeadline, RELAY_DRAIN_MS, requestTimeoutAnswer, type FrontedConnections } from './connection-front.ts'
import type { PlainServer } from './rebinding-server.ts'

interface DenoConn {
  remoteAddr: { hostname: string }
  localAddr: { port: number }
  read(buffer: Uint8Array): Promise<number | null>
  write(bytes: Uint8Array): Promise<number>
  closeWrite(): Promise<void>
  close(): void
}

declare const Deno: {
  listen(options: { hostname: string; port: number; reusePort?: boolean }): AsyncIterable<DenoConn> & { addr: { port: number }; close(): void }
  connect(options: { hostname: string; port: number }): Promise<DenoConn>
}

const READ_BYTES = 64 * 1024
const encoder = new TextEncoder()

async function writeAll(conn: DenoConn, bytes: Uint8Array): Promise<void> {
  while (bytes.byteLength > 0) bytes = bytes.subarray(await conn.write(bytes))
}

function closeQuietly(conn: DenoConn): void {
  try {
    conn.close()
  } catch {
    // closed already
  }
}

/** Reads `from` and writes to `to` until `from` ends: each write waits, so a slow reader slows the sender. */
async function pump(from: DenoConn, to: DenoConn, seen: (chunk: Uint8Array) => void): Promise<void> {
  const buffer = new Uint8Array(READ_BYTES)
  for (;;) {
    const read = await from.read(buffer)
    if (read === null) return
    const chunk = buffer.subarray(0, read)
    seen(chunk)
    await writeAll(to, chunk)
  }
}

/**
 * connection-front.ts on Deno's own sockets for a plain listener: each direction is a read-then-write
 * loop, so backpressure is the loop waiting on its write.
 */
export async function denoPlainFront(options: ServeOptions, startInner: (options: ServeOptions, connections: FrontedConnections) => Promise<PlainServer>): Promise<PlainServer> {
  const clients = new Map<number, string>()
  const inner = await startInner({ host: '127.0.0.1', port: 0, requestTimeoutMs: options.requestTimeoutMs }, { clientOf: (port) => clients.get(port) })
  const deadlineMs = options.headersTimeoutMs ?? 0
  const open = new Set<DenoConn>()
  const listener = Deno.listen({ hostname: options.host, port: options.port, ...(options.reusePort === true ? { reusePort: true } : {}) })
  const relay = async (client: DenoConn) => {
    open.add(client)
    let server: DenoConn | undefined
    let port: number | undefined
    let expired = false
    const deadline =
      deadlineMs > 0 ?
        new HeadDeadline(deadlineMs, (answer) => {
          expired = true
          if (server !== undefined) closeQuietly(server)
          if (!answer) return closeQuietly(client)
          writeAll(client, encoder.encode(requestTimeoutAnswer())).finally(() => closeQuietly(client)).catch(() => {})
        })
      : undefined
    try {
      server = await Deno.connect({ hostname: '127.0.0.1', port: inner.port })
      port = server.localAddr.port
      clients.set(port, client.remoteAddr.hostname)
      const toServer = pump(client, server, (chunk) => deadline?.fromClient(chunk)).then(() => server!.closeWrite())
      const toClient = pump(server, client, () => deadline?.fromServer())
      await Promise.race([toClient, toServer.then(() => toClient)])
    } catch {
      // either side went away: both close below
    } finally {
      deadline?.stop()
      if (port !== undefined) clients.delete(port)
      if (server !== undefined) closeQuietly(server)
      if (!expired) closeQuietly(client)
      open.delete(client)
    }
  }
  void (async () => {
    for await (const client of listener) void relay(client)
  })().catch(() => {})
  return {
    host: options.host,
    port: listener.addr.port,
    async close() {
      listener.close()
      await inner.close()
      // The server behind has answered and closes its connections: what it said last reaches the clients first.
      await allClosed(open, RELAY_DRAIN_MS)
      for (const client of open) closeQuietly(client)
    },
    closeWebSockets: () => inner.closeWebSockets(),
  }
}
