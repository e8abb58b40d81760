import type { Server as NetServer, Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import type { ServeOptions } from '../core/host.ts'
import { subjectAltNames } from './peer-certificate.ts'
import type { PlainServer } from './rebinding-server.ts'
import { RequestHeads } from './request-heads.ts'
import { lazyBuiltin } from './builtin.ts'

const nodeNet = lazyBuiltin(() => process.getBuiltinModule('node:net'))
const nodeTls = lazyBuiltin(() => process.getBuiltinModule('node:tls'))

/** How long a shutdown waits for relays to pass on the server's last bytes before cutting them. */
export const RELAY_DRAIN_MS = 2_000

/** Resolves once `done` holds (checked every few ms), or after `ms`. */
export async function until(done: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms
  while (!done() && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 10))
}

/** Resolves once the set is empty (each relay deletes itself as it closes), or after `ms`. */
export function allClosed(open: Set<unknown>, ms: number): Promise<void> {
  return until(() => open.size === 0, ms)
}

/**
 * How long a shutdown waits for a connection the front accepted to hand its first request to the
 * server behind: the server, once stopping, closes a connection that has not sent a request yet.
 */
export const FIRST_REQUEST_GRACE_MS = 500

/** What the inner server needs to know of its connections: which client each one carries. */
export interface FrontedConnections {
  /** The client address an inner connection (by its source port) carries; undefined for a connection not from the front. */
  clientOf(innerPort: number): string | undefined
}

/**
 * What Bun.serve and Deno.serve cannot do themselves, done by a front of our own on the listener's
 * address, relaying each connection to the runtime's server bound on a loopback port:
 * - a header deadline (`headersTimeoutMs`): Bun's idle timer restarts on every byte and Deno.serve
 *   has none, so a client that drips its head holds a connection for ever (runtime.md §11). The
 *   front follows the requests on each connection (request-heads.ts) and, when a head takes longer,
 *   answers 408 and closes, as Node's headersTimeout does;
 * - client certificate names (`tls.acceptsPeer`): Bun.serve never shows the server the client's
 *   certificate (oven-sh/bun#14097), node:tls does, so the front terminates TLS then.
 * The client's address travels as the source port of the inner connection: a connection to the
 * inner port from anywhere else carries no client and is refused.
 */
export async function connectionFront(options: ServeOptions, startInner: (options: ServeOptions, connections: FrontedConnections) => Promise<PlainServer>): Promise<PlainServer> {
  const clients = new Map<number, string>()
  const inner = await startInner({ host: '127.0.0.1', port: 0, requestTimeoutMs: options.requestTimeoutMs }, { clientOf: (port) => clients.get(port) })
  const open = new Set<Socket>()
  const deadlineMs = options.headersTimeoutMs ?? 0
  const relay = (client: Socket) => {
    open.add(client)
    relayConnection(client, inner.port, deadlineMs, clients, () => open.delete(client))
  }
  const front = frontServer(options, relay)
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
      // The server behind has answered and closes its connections: what it said last reaches the clients first.
      await allClosed(open, RELAY_DRAIN_MS)
      for (const client of open) client.destroy()
      await stopped
    },
    closeWebSockets: () => inner.closeWebSockets(),
  }
}

function frontServer(options: ServeOptions, relay: (client: Socket) => void): NetServer {
  const tls = options.tls
  if (tls === undefined) return nodeNet().createServer(relay)
  const { cert, key, clientCa, acceptsPeer } = tls
  const verify = clientCa === undefined ? {} : { ca: clientCa, requestCert: true, rejectUnauthorized: true }
  const front = nodeTls().createServer({ cert, key, ...verify }, (client: TLSSocket) => {
    if (acceptsPeer !== undefined && !acceptsPeer(subjectAltNames(client.getPeerCertificate().subjectaltname), client.remoteAddress ?? '')) return void client.destroy()
    relay(client)
  })
  front.on('tlsClientError', () => {})
  return front
}

const REQUEST_TIMEOUT_MESSAGE = 'the request headers did not arrive within header_timeout'

/** The 408 a front sends when a head is late, shaped like every other Pillion error answer. */
export function requestTimeoutAnswer(): string {
  const requestId = crypto.randomUUID()
  const body = JSON.stringify({ code: 'request_timeout', message: REQUEST_TIMEOUT_MESSAGE, request_id: requestId })
  return (
    'HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-type: application/json\r\n' +
    `x-request-id: ${requestId}\r\nx-pillion-error: request_timeout\r\ncontent-length: ${body.length}\r\n\r\n${body}`
  )
}

/**
 * One connection's header deadline: the first head's runs from the accept (as NGINX's
 * client_header_timeout does), a later one's from its first byte. `expire` is told whether a 408 can
 * be sent: not when the server behind has said anything since the late head began, as the 408 would
 * land inside its answer.
 */
export class HeadDeadline {
  readonly #deadlineMs: number
  readonly #expire: (answer: boolean) => void
  readonly #heads: RequestHeads
  #timer: ReturnType<typeof setTimeout> | undefined
  #quietSinceHead = true

  constructor(deadlineMs: number, expire: (answer: boolean) => void) {
    this.#deadlineMs = deadlineMs
    this.#expire = expire
    this.#heads = new RequestHeads((inHead) => (inHead ? this.#start() : clearTimeout(this.#timer)))
    this.#start()
  }

  fromClient(chunk: Uint8Array): void {
    this.#heads.feed(chunk)
  }

  fromServer(): void {
    this.#quietSinceHead = false
  }

  stop(): void {
    clearTimeout(this.#timer)
  }

  #start(): void {
    clearTimeout(this.#timer)
    this.#quietSinceHead = true
    this.#timer = setTimeout(() => this.#expire(this.#quietSinceHead), this.#deadlineMs)
  }
}

function relayConnection(client: Socket, innerPort: number, deadlineMs: number, clients: Map<number, string>, closed: () => void): void {
  const remoteAddress = client.remoteAddress ?? ''
  const pipe = nodeNet().connect(innerPort, '127.0.0.1')
  let expired = false
  const deadline =
    deadlineMs > 0 ?
      new HeadDeadline(deadlineMs, (answer) => {
        expired = true
        if (answer) {
          client.end(requestTimeoutAnswer())
          // A client that does not read its 408 does not keep the connection either.
          setTimeout(() => client.destroy(), 1_000).unref?.()
        } else client.destroy()
        pipe.destroy()
      })
    : undefined
  pipe.once('connect', () => {
    clients.set(pipe.localPort!, remoteAddress)
    client.on('data', (chunk: Uint8Array) => {
      deadline?.fromClient(chunk)
      if (!pipe.write(chunk)) client.pause()
    })
    pipe.on('drain', () => client.resume())
    pipe.on('data', (chunk: Uint8Array) => {
      deadline?.fromServer()
      if (!client.write(chunk)) pipe.pause()
    })
    client.on('drain', () => pipe.resume())
    client.on('end', () => pipe.end())
    pipe.on('end', () => client.end())
  })
  const done = () => {
    deadline?.stop()
    if (pipe.localPort !== undefined) clients.delete(pipe.localPort)
    closed()
    if (!expired) client.destroy()
    pipe.destroy()
  }
  client.once('close', done)
  pipe.once('close', done)
  client.on('error', () => {})
  pipe.on('error', () => {})
}
