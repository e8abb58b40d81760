import { STATUS_CODES, type IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import { errorResponse, SANE_REQUEST_ID, tunnelRefusal } from '../core/errors.ts'
import type { ClientInfo, Handler } from '../core/host.ts'
import { isBodyless } from '../core/upstream-answer.ts'
import { isWebSocketRequest, sessionOf, type WebSocketCloser, type WebSocketSession } from '../core/websocket.ts'
import { claimUpstream, switchingProtocols, WebSocketBridge } from './node-websocket.ts'

/**
 * What Node's server hands to listeners instead of the app: CONNECT, and requests with an Upgrade
 * header. A WebSocket handshake runs through the app like any request; the rest get a plain answer
 * on a closing connection.
 */

/**
 * Node hands CONNECT to a 'connect' listener instead of the app (and a web Request cannot carry the
 * method), so the adapter writes the core's refusal itself; without a listener Node would just
 * close the socket.
 */
export async function refuseTunnel(incoming: IncomingMessage, socket: Socket): Promise<void> {
  const answer = tunnelRefusal(requestIdOf(incoming))
  const body = await answer.text()
  let head = `HTTP/1.1 ${answer.status} Method Not Allowed\r\n`
  answer.headers.forEach((value, name) => (head += `${name}: ${value}\r\n`))
  head += `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n`
  socket.on('error', () => {})
  socket.end(head + body)
}

function requestIdOf(incoming: IncomingMessage): string {
  const given = incoming.headers['x-request-id']
  return typeof given === 'string' && SANE_REQUEST_ID.test(given) ? given : crypto.randomUUID()
}

function ignore(): void {}

/** The client of a request that came with Upgrade: its socket is Node's to us from the start, so its 'close' says it left. */
class UpgradeClient implements ClientInfo {
  readonly remoteAddress: string
  readonly #socket: Socket

  constructor(socket: Socket) {
    this.remoteAddress = socket.remoteAddress ?? ''
    this.#socket = socket
  }

  watchGone(listener: { handleEvent(): void }): () => void {
    const socket = this.#socket
    let watching = true
    const onClose = () => {
      if (watching) listener.handleEvent()
    }
    if (socket.destroyed) queueMicrotask(onClose)
    else socket.once('close', onClose)
    return () => {
      watching = false
      socket.off('close', onClose)
    }
  }
}

/**
 * The request line and headers of an upgrade request as a web Request, the way @hono/node-server
 * builds its own: an absolute-form target as given, else the scheme of the socket and the Host header,
 * which must be a host and nothing more.
 */
function requestOf(incoming: IncomingMessage): Request {
  const target = incoming.url ?? ''
  let url: URL
  if (/^https?:\/\//i.test(target)) url = new URL(target)
  else {
    const host = incoming.headers.host
    if (host === undefined || host === '') throw new Error('the Host header is missing')
    if (!target.startsWith('/')) throw new Error('the request target is not a path')
    const query = target.indexOf('?')
    if (target.slice(0, query === -1 ? undefined : query).includes('\\')) throw new Error('the path has a backslash')
    const scheme = (incoming.socket as Socket & { encrypted?: boolean }).encrypted === true ? 'https' : 'http'
    url = new URL(`${scheme}://${host}${target}`)
    if (url.hostname !== host.replace(/:\d+$/, '').toLowerCase()) throw new Error('the Host header is not a host')
  }
  const headers = new Headers()
  const raw = incoming.rawHeaders
  for (let i = 0; i < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!)
  return new Request(url, { method: incoming.method ?? 'GET', headers })
}

/** Headers the connection-closing answer sets itself. */
const NOT_RELAYED = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length'])

/**
 * Writes an ordinary answer on an upgrade request's socket and closes it: Node no longer parses
 * that connection, so nothing may follow. A body streams with backpressure, chunked when its length
 * is not declared.
 */
async function sendAnswer(socket: Socket, response: Response, method: string): Promise<void> {
  // What the client sends from now on is dropped, but read: its end must be seen for the socket to close.
  socket.resume()
  const { status, body } = response
  let head = `HTTP/1.1 ${status} ${response.statusText || STATUS_CODES[status] || ''}\r\n`
  response.headers.forEach((value, name) => {
    if (!NOT_RELAYED.has(name)) head += `${name}: ${value}\r\n`
  })
  const length = response.headers.get('content-length')
  const bodyless = isBodyless(method, status)
  const chunked = !bodyless && body !== null && length === null
  if (length !== null) head += `content-length: ${length}\r\n`
  else if (chunked) head += 'transfer-encoding: chunked\r\n'
  else if (!bodyless) head += 'content-length: 0\r\n'
  head += 'connection: close\r\n\r\n'
  if (bodyless || body === null) {
    void body?.cancel().catch(ignore)
    socket.end(head)
    return
  }
  socket.write(head)
  const reader = body.getReader()
  const onClose = () => void reader.cancel().catch(ignore)
  socket.once('close', onClose)
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      if (value.byteLength === 0) continue // a zero-size chunk would end a chunked body
      if (chunked) socket.write(`${value.byteLength.toString(16)}\r\n`)
      const more = socket.write(value)
      if (chunked) socket.write('\r\n')
      if (!more && !(await drained(socket))) return
    }
    if (chunked) socket.end('0\r\n\r\n')
    else socket.end()
  } catch {
    socket.destroy() // the body failed midway: the client must not take it for whole
  } finally {
    socket.off('close', onClose)
  }
}

/** Resolves true when the socket drains, false when it closes first. */
function drained(socket: Socket): Promise<boolean> {
  return new Promise((resolve) => {
    const settle = (ok: boolean) => () => {
      socket.off('drain', onDrain)
      socket.off('close', onClose)
      resolve(ok)
    }
    const onDrain = settle(true)
    const onClose = settle(false)
    socket.once('drain', onDrain)
    socket.once('close', onClose)
  })
}

/** How an accepted WebSocket ended when it was never bridged. */
function unbridged(session: WebSocketSession, by: WebSocketCloser): void {
  session.upstream.abandon()
  session.closed({ code: 1006, reason: '', by, messagesIn: 0, bytesIn: 0, messagesOut: 0, bytesOut: 0 })
}

/** What a client may send before its 101 is held (a conforming one sends nothing); past it, its socket is not read. */
const EARLY_BYTES_LIMIT = 64 * 1024

/**
 * Node hands every request with Upgrade to an 'upgrade' listener once there is one, h2c included.
 * A WebSocket handshake runs through the app like any request; when its answer carries a session the
 * client is upgraded and bridged. Any other upgrade request is served as plain HTTP/1.1 (the core
 * drops Upgrade and Connection as hop-by-hop) on a connection that then closes.
 */
export class Upgrades {
  readonly #handler: Handler
  readonly #bridges = new Set<WebSocketBridge>()
  #closing = false

  constructor(handler: Handler) {
    this.#handler = handler
  }

  readonly listener = (incoming: IncomingMessage, socket: Socket, head: Buffer): void => {
    socket.on('error', ignore)
    this.#serve(incoming, socket, head).catch(() => socket.destroy())
  }

  /** The server is closing: every bridge gets close 1001 and a short grace; handshakes still running get the same once bridged. */
  close(): void {
    this.#closing = true
    for (const bridge of this.#bridges) bridge.goAway()
  }

  async #serve(incoming: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    const method = incoming.method ?? 'GET'
    const id = requestIdOf(incoming)
    // Node stops parsing at the end of the headers: a body would be read as WebSocket frames.
    const length = incoming.headers['content-length']
    if ((length !== undefined && length !== '0') || incoming.headers['transfer-encoding'] !== undefined) {
      return sendAnswer(socket, errorResponse('bad_request', 'a request asking to switch protocols cannot carry a body', id), method)
    }
    let request: Request
    try {
      request = requestOf(incoming)
    } catch (error) {
      return sendAnswer(socket, errorResponse('bad_request', 'malformed request', id), method)
    }
    const websocket = isWebSocketRequest(request.method, request.headers)
    // Read while the handshake runs, so a client that leaves is seen (its 'close'): keep its bytes for the bridge.
    const early: Buffer[] = [head]
    let earlyBytes = head.byteLength
    const onData = (chunk: Buffer) => {
      early.push(chunk)
      earlyBytes += chunk.byteLength
      if (earlyBytes > EARLY_BYTES_LIMIT) socket.pause()
    }
    // A client that stops sending before its 101 can never hold a WebSocket open: it has gone.
    const onEnd = () => socket.destroy()
    socket.on('data', onData)
    if (websocket) socket.once('end', onEnd)
    let response: Response
    try {
      response = await this.#handler(request, new UpgradeClient(socket))
    } catch {
      response = errorResponse('internal_error', 'internal error', id)
    }
    socket.off('data', onData)
    socket.off('end', onEnd)
    socket.pause()
    const session = websocket ? sessionOf(response) : undefined
    if (session === undefined) return sendAnswer(socket, response, method)
    if (socket.destroyed || !socket.writable) return unbridged(session, 'client')
    const upstream = claimUpstream(session.upstream)
    if (upstream === undefined || upstream.destroyed) {
      unbridged(session, 'upstream')
      const message = 'the upstream closed the WebSocket before the client was upgraded'
      return sendAnswer(socket, errorResponse('upstream_unavailable', message, response.headers.get('x-request-id') ?? id), method)
    }
    socket.write(switchingProtocols(response, session.upstream))
    const clientHead = early.length === 1 ? head : Buffer.concat(early, earlyBytes)
    const bridge = new WebSocketBridge(socket, clientHead, upstream, session, (ended) => this.#bridges.delete(ended))
    this.#bridges.add(bridge)
    if (this.#closing) bridge.goAway()
  }
}
