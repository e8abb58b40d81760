import { connect, type Socket } from 'node:net'
import { createServer as createTlsServer, type TLSSocket } from 'node:tls'
import type { PeerNamesCheck, ServeOptions } from '../core/host.ts'
import { subjectAltNames } from './peer-certificate.ts'
import type { PlainServer } from './rebinding-server.ts'

/** What the inner Bun.serve needs to know of its connections: which client each one carries. */
export interface FrontedConnections {
  /** The client address an inner connection (by its source port) carries; undefined for a connection not from the front. */
  clientOf(innerPort: number): string | undefined
}

/**
 * allowed_sans on Bun: Bun.serve never shows the server the client's certificate (oven-sh/bun#14097),
 * but Bun's node:tls does. So node:tls terminates TLS on the listener's address, verifies the client
 * against client_ca, checks its names, and pipes each accepted connection to the Bun.serve that
 * `startInner` binds on a loopback port. The client's address travels as the source port of the inner
 * connection: a connection to the inner port from anywhere else carries no client and is refused.
 */
export async function tlsFront(
  options: ServeOptions & { tls: NonNullable<ServeOptions['tls']> & { acceptsPeer: PeerNamesCheck } },
  startInner: (options: ServeOptions, connections: FrontedConnections) => Promise<PlainServer>,
): Promise<PlainServer> {
  const clients = new Map<number, string>()
  const inner = await startInner({ host: '127.0.0.1', port: 0, requestTimeoutMs: options.requestTimeoutMs }, { clientOf: (port) => clients.get(port) })
  const { cert, key, clientCa, acceptsPeer } = options.tls
  const open = new Set<Socket>()
  const front = createTlsServer({ cert, key, ca: clientCa, requestCert: true, rejectUnauthorized: true }, (client: TLSSocket) => {
    const remoteAddress = client.remoteAddress ?? ''
    if (!acceptsPeer(subjectAltNames(client.getPeerCertificate().subjectaltname), remoteAddress)) return void client.destroy()
    const pipe = connect(inner.port, '127.0.0.1')
    open.add(client)
    pipe.once('connect', () => {
      clients.set(pipe.localPort!, remoteAddress)
      client.pipe(pipe)
      pipe.pipe(client)
    })
    const done = () => {
      if (pipe.localPort !== undefined) clients.delete(pipe.localPort)
      open.delete(client)
      client.destroy()
      pipe.destroy()
    }
    client.once('close', done)
    pipe.once('close', done)
    client.on('error', () => {})
    pipe.on('error', () => {})
  })
  front.on('tlsClientError', () => {})
  await new Promise<void>((resolve, reject) => {
    front.once('error', reject)
    front.listen({ host: options.host, port: options.port, ...(options.reusePort === true ? { reusePort: true } : {}) }, () => resolve())
  })
  const address = front.address()
  return {
    host: options.host,
    port: typeof address === 'object' && address !== null ? address.port : options.port,
    // The front stops accepting; the inner server drains its requests as on shutdown, and each
    // connection it lets go of takes its front connection with it.
    async close() {
      const stopped = new Promise<void>((resolve) => front.close(() => resolve()))
      await inner.close()
      for (const client of open) client.destroy()
      await stopped
    },
    closeWebSockets: () => inner.closeWebSockets(),
  }
}
