import { createHash } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Dispatcher } from 'undici'
import type { UpstreamAnswer } from '../core/host.ts'
import { isBodyless } from '../core/upstream-answer.ts'
import { UpstreamError } from '../core/upstream-error.ts'
import {
  CLOSE_GOING_AWAY,
  CLOSE_MESSAGE_TOO_BIG,
  type UpstreamWebSocket,
  type WebSocketClose,
  type WebSocketCloser,
  type WebSocketConnectRequest,
  type WebSocketConnector,
  type WebSocketHandshake,
  type WebSocketSession,
} from '../core/websocket.ts'
import { agentFor, answerHeaders, failureOf, splitOrigin } from './node-upstream.ts'
import { FrameScanner, closeFrame, type CloseSeen } from './ws-frames.ts'
import type { Abortable } from '../core/cancel.ts'

/**
 * Node's WebSockets relay raw bytes: the client's handshake goes upstream as an HTTP/1.1 upgrade on
 * undici's dispatcher (the same agents as HTTP, so connect_timeout and the upstream CA apply), with
 * the client's Sec-WebSocket-Key, so the upstream's Sec-WebSocket-Accept is valid for the client.
 * After both 101s the sockets are piped to each other with backpressure, through a frame scanner
 * that never changes a byte (ws-frames.ts). No frame is decoded, re-masked or re-assembled.
 */

/** Headers undici writes itself for an upgrade, and refuses to be given. */
const WRITTEN_BY_UNDICI = new Set(['connection', 'upgrade'])

/** Opens the upstream side: ws:// and wss:// are http:// and https:// to the dispatcher. */
export const nodeWebSocket: WebSocketConnector = (request) =>
  new Promise<WebSocketHandshake>((resolve, reject) => {
    if (request.signal.aborted) return reject(request.signal.reason)
    const [origin, path] = splitOrigin(`http${request.url.slice(2)}`)
    const headers: string[] = []
    for (const [name, value] of request.headers) if (!WRITTEN_BY_UNDICI.has(name)) headers.push(name, value)
    const options: Dispatcher.DispatchOptions = { origin, path, method: 'GET', headers, upgrade: 'websocket' }
    agentFor(request.connectTimeoutMs, request.tls).dispatch(options, new Handshake(request, resolve, reject))
  })

const ACCEPT_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

/** Why the upstream's 101 would fail the client's handshake, if it would (RFC 6455 §4.1, client step 4). */
function acceptProblem(key: string | null, accept: string | null): string | undefined {
  if (key === null) return undefined // not a conforming client: it checks nothing we could pass on
  const expected = createHash('sha1').update(key + ACCEPT_GUID).digest('base64')
  if (accept === expected) return undefined
  return accept === null ? 'the upstream answered 101 without Sec-WebSocket-Accept' : 'the upstream answered 101 with a wrong Sec-WebSocket-Accept'
}

/** One handshake's dispatch handler: resolves with the upstream's socket on 101, or with its other answer. */
class Handshake implements Dispatcher.DispatchHandler {
  readonly #request: WebSocketConnectRequest
  readonly #resolve: (handshake: WebSocketHandshake) => void
  readonly #reject: (error: unknown) => void
  #controller: Dispatcher.DispatchController | undefined
  #stream: ReadableStreamDefaultController<Uint8Array> | undefined
  #settled = false

  constructor(request: WebSocketConnectRequest, resolve: (handshake: WebSocketHandshake) => void, reject: (error: unknown) => void) {
    this.#request = request
    this.#resolve = resolve
    this.#reject = reject
    request.signal.addEventListener('abort', this)
  }

  /** The try's signal fired while connecting, waiting for the answer or reading a refusal's body. */
  handleEvent(): void {
    const reason = this.#request.signal.reason
    if (this.#controller !== undefined) return this.#controller.abort(reason)
    this.#done()
    this.#fail(reason)
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller
    if (this.#request.signal.aborted) controller.abort(this.#request.signal.reason)
  }

  onRequestUpgrade(_controller: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders, socket: Duplex): void {
    this.#done()
    if (this.#settled) return void socket.destroy()
    const received = answerHeaders(headers)
    const problem =
      status !== 101 ? `the upstream switched protocols with status ${status}` : acceptProblem(this.#request.headers.get('sec-websocket-key'), received.get('sec-websocket-accept'))
    if (problem !== undefined) {
      socket.destroy()
      return this.#fail(new UpstreamError('protocol-error', problem))
    }
    this.#settled = true
    this.#resolve({ accepted: true, upstream: new NodeUpstreamWebSocket(socket as Socket, received, this.#request.signal) })
  }

  /** Any answer but 101 is passed on as the upstream gave it, body streamed with backpressure. */
  onResponseStart(controller: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if (status < 200) return // informational (102, 103): the final answer follows
    if (status > 599) return controller.abort(new UpstreamError('protocol-error', `upstream answered with status ${status}`))
    const answer: UpstreamAnswer = { status, statusText: statusMessage ?? '', headers: answerHeaders(headers), body: null }
    if (!isBodyless('GET', status)) {
      answer.body = new ReadableStream<Uint8Array>({
        start: (stream) => {
          this.#stream = stream
        },
        pull: () => {
          if (controller.paused) controller.resume()
        },
        cancel: () => controller.abort(new UpstreamError('reset', 'the response body was cancelled')),
      })
    }
    this.#settled = true
    this.#resolve({ accepted: false, answer })
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#stream === undefined || chunk.byteLength === 0) return
    this.#stream.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength))
    if ((this.#stream.desiredSize ?? 0) <= 0) controller.pause()
  }

  onResponseEnd(): void {
    this.#done()
    this.#stream?.close()
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error & { code?: string }): void {
    this.#done()
    const signal = this.#request.signal
    const reason =
      signal.aborted ? signal.reason
      : error instanceof UpstreamError ? error
      : new UpstreamError(failureOf(error, this.#controller !== undefined), error.message, { cause: error })
    if (!this.#settled) this.#fail(reason)
    else this.#stream?.error(reason)
  }

  #fail(reason: unknown): void {
    if (this.#settled) return
    this.#settled = true
    this.#reject(reason)
  }

  #done(): void {
    this.#request.signal.removeEventListener('abort', this)
  }
}

function ignore(): void {}

/**
 * The upstream's side between its 101 and the client's: the try's signal still cancels it, until
 * the adapter claims the socket to bridge it. undici has already put any bytes it read past the 101
 * back into the socket, so they are read first.
 */
class NodeUpstreamWebSocket implements UpstreamWebSocket {
  readonly protocol: string
  readonly headers: Headers
  readonly #socket: Socket
  #signal: Abortable | undefined
  #claimed = false

  constructor(socket: Socket, headers: Headers, signal: Abortable) {
    this.protocol = headers.get('sec-websocket-protocol') ?? ''
    this.headers = headers
    this.#socket = socket
    // undici took its listeners off: a reset before the bridge starts must not be an uncaught error.
    socket.on('error', ignore)
    if (signal.aborted) socket.destroy()
    else {
      this.#signal = signal
      signal.addEventListener('abort', this)
    }
  }

  handleEvent(): void {
    this.#socket.destroy()
  }

  abandon(): void {
    this.#release()
    this.#socket.destroy()
  }

  /** The socket for the bridge, once; from then on only the bridge ends it. */
  static claim(upstream: UpstreamWebSocket): Socket | undefined {
    if (!(upstream instanceof NodeUpstreamWebSocket) || upstream.#claimed) return undefined
    upstream.#claimed = true
    upstream.#release()
    return upstream.#socket
  }

  #release(): void {
    this.#signal?.removeEventListener('abort', this)
    this.#signal = undefined
  }
}

/** The upstream socket an accepted handshake holds, for the bridge; undefined when it is not one this adapter opened. */
export function claimUpstream(upstream: UpstreamWebSocket): Socket | undefined {
  return NodeUpstreamWebSocket.claim(upstream)
}

/** Headers of the chain's answer that are not the client's to get in its 101: the 101's own, and a Response's defaults. */
const NOT_IN_101 = new Set(['connection', 'upgrade', 'keep-alive', 'transfer-encoding', 'content-length', 'content-type', 'sec-websocket-accept', 'sec-websocket-extensions'])

/** The client's 101: the upstream's Sec-WebSocket-Accept (made from the client's own key) and the chain's answer headers. */
export function switchingProtocols(answer: Response, upstream: UpstreamWebSocket): string {
  let head = 'HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n'
  const accept = upstream.headers.get('sec-websocket-accept')
  if (accept !== null) head += `sec-websocket-accept: ${accept}\r\n`
  answer.headers.forEach((value, name) => {
    if (!NOT_IN_101.has(name)) head += `${name}: ${value}\r\n`
  })
  // A client that offered protocols fails the connection without the chosen one: never lose it.
  if (upstream.protocol !== '' && !answer.headers.has('sec-websocket-protocol')) head += `sec-websocket-protocol: ${upstream.protocol}\r\n`
  return `${head}\r\n`
}

/** After the gateway sends its close frames, how long either side has to close before it is cut. */
const GRACE_MS = 1_000
/** After one side went away, how long the other has to take the rest of its bytes and close. */
const LINGER_MS = 30_000

/** One direction of a bridge: what `from` sends goes to `to`, frame by frame. */
interface Direction {
  readonly from: Socket
  readonly to: Socket
  readonly side: 'client' | 'upstream'
  /** Frames toward the upstream are masked, as a client's must be (RFC 6455 §5.3). */
  readonly masked: boolean
  readonly scanner: FrameScanner
  /** The gateway's close frame went to `to` (or `to` is gone): what `from` sends now is dropped. */
  stopped: boolean
  /** The close to send to `to` once the frame passing now has passed. */
  pendingClose: [code: number, reason: string] | undefined
  /** `from` is paused until `to` drains. */
  waiting: boolean
  closed: boolean
}

/**
 * A client socket upgraded with its 101, relayed to the upstream socket until both are closed; then
 * the session hears once how it ended. Memory stays bounded: a side that does not read stops the
 * bridge from reading the other.
 */
export class WebSocketBridge {
  readonly #session: WebSocketSession
  readonly #directions: [Direction, Direction]
  readonly #onEnd: (bridge: WebSocketBridge) => void
  #idle: ReturnType<typeof setTimeout> | undefined
  #cut: ReturnType<typeof setTimeout> | undefined
  #cutAt = Number.POSITIVE_INFINITY
  /** Who ended the connection and how: the first close frame, disconnect, or the gateway's own close. */
  #ending: { by: WebSocketCloser; code: number; reason: string } | undefined
  #finished = false

  /**
   * `head` is what the client sent after its handshake; the upstream's early bytes are in its socket.
   * Neither socket may be destroyed yet (a 'close' already emitted would never be heard).
   */
  constructor(client: Socket, head: Uint8Array, upstream: Socket, session: WebSocketSession, onEnd: (bridge: WebSocketBridge) => void) {
    this.#session = session
    this.#onEnd = onEnd
    const direction = (from: Socket, to: Socket, side: 'client' | 'upstream'): Direction => ({
      from,
      to,
      side,
      masked: side === 'client',
      scanner: new FrameScanner(session.maxMessageBytes),
      stopped: false,
      pendingClose: undefined,
      waiting: false,
      closed: false,
    })
    this.#directions = [direction(client, upstream, 'client'), direction(upstream, client, 'upstream')]
    if (session.idleTimeoutMs > 0) this.#idle = setTimeout(() => this.#gatewayClose(CLOSE_GOING_AWAY, 'idle timeout'), session.idleTimeoutMs)
    for (const d of this.#directions) {
      d.from.setNoDelay(true)
      d.from.setTimeout(0)
      d.from.on('error', ignore)
      d.from.on('data', (chunk: Buffer) => this.#relay(d, chunk))
      d.from.on('end', () => endSoftly(d.to))
      d.from.on('close', () => this.#gone(d))
    }
    if (head.byteLength > 0) this.#relay(this.#directions[0], head)
    for (const d of this.#directions) if (!d.waiting) d.from.resume()
  }

  /** The server is closing: close both sides with 1001, then cut them after a short grace. */
  goAway(): void {
    this.#gatewayClose(CLOSE_GOING_AWAY, 'going away')
  }

  #relay(d: Direction, chunk: Uint8Array): void {
    this.#idle?.refresh()
    if (d.stopped) return
    const scan = d.scanner.scan(chunk)
    if (scan.pass.byteLength > 0 && !d.to.writableEnded && !d.to.destroyed && !d.to.write(scan.pass)) this.#wait(d)
    if (scan.closed !== undefined) this.#sawClose(d, scan.closed)
    if (scan.stop === 'too-big') this.#gatewayClose(CLOSE_MESSAGE_TOO_BIG, 'message too big')
    else if (scan.stop === 'requested' && d.pendingClose !== undefined) this.#sendClose(d, ...d.pendingClose)
  }

  #wait(d: Direction): void {
    if (d.waiting) return
    d.waiting = true
    d.from.pause()
    d.to.once('drain', () => {
      d.waiting = false
      d.from.resume()
    })
  }

  #sawClose(d: Direction, seen: CloseSeen): void {
    this.#ending ??= { by: d.side, code: seen.code, reason: seen.reason }
  }

  /** Sends the gateway's close frame to each side at its next frame boundary, and gives both a grace to close. */
  #gatewayClose(code: number, reason: string): void {
    this.#ending ??= { by: 'gateway', code, reason }
    for (const d of this.#directions) {
      if (d.stopped || d.pendingClose !== undefined) continue
      // A close frame already passed to this side, or it is gone: it must not get a second one.
      if (d.scanner.closeSeen !== undefined || d.to.destroyed) this.#stop(d)
      else if (d.scanner.atBoundary) this.#sendClose(d, code, reason)
      else {
        d.pendingClose = [code, reason]
        d.scanner.stopAtBoundary()
      }
    }
    this.#cutWithin(GRACE_MS)
  }

  #sendClose(d: Direction, code: number, reason: string): void {
    if (!d.to.writableEnded && !d.to.destroyed) d.to.write(closeFrame(code, reason, d.masked))
    this.#stop(d)
  }

  /** Nothing more goes to `to`: end it once what it was sent is flushed, and read `from` on to see it close. */
  #stop(d: Direction): void {
    d.stopped = true
    endSoftly(d.to)
    if (d.waiting) {
      d.waiting = false
      d.from.resume()
    }
  }

  #gone(d: Direction): void {
    if (d.closed) return
    d.closed = true
    this.#ending ??= { by: d.side, code: 1006, reason: '' }
    // Nothing more comes from the side that is gone, and what still comes for it is dropped.
    endSoftly(d.to)
    this.#stop(this.#directions[d.side === 'client' ? 1 : 0])
    if (this.#directions.every((each) => each.closed)) return this.#finish()
    this.#cutWithin(LINGER_MS)
  }

  /** Destroys what is still open after this long (the earliest deadline asked for wins). */
  #cutWithin(ms: number): void {
    const at = performance.now() + ms
    if (at >= this.#cutAt) return
    this.#cutAt = at
    clearTimeout(this.#cut)
    this.#cut = setTimeout(() => {
      for (const d of this.#directions) d.from.destroy()
    }, ms)
  }

  #finish(): void {
    if (this.#finished) return
    this.#finished = true
    clearTimeout(this.#idle)
    clearTimeout(this.#cut)
    this.#onEnd(this)
    const [inward, outward] = this.#directions
    const ending = this.#ending ?? { by: 'gateway', code: 1006, reason: '' }
    const close: WebSocketClose = {
      ...ending,
      messagesIn: inward.scanner.messages,
      bytesIn: inward.scanner.bytes,
      messagesOut: outward.scanner.messages,
      bytesOut: outward.scanner.bytes,
    }
    this.#session.closed(close)
  }
}

function endSoftly(socket: Socket): void {
  if (!socket.writableEnded && !socket.destroyed) socket.end()
}
