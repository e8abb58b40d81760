import type { UpstreamTls } from '../core/host.ts'
import type { WebSocketConnector } from '../core/websocket.ts'
import { UpstreamError, type UpstreamFailure } from '../core/upstream-error.ts'
import type { BridgeableUpstream, RelayMessage, RelaySocket, UpstreamEvents } from './ws-relay.ts'

/**
 * The upstream side of a WebSocket on the runtime's own WebSocket client (Bun, Deno): the global
 * WebSocket class, given the forwarded headers and a trusted CA through each runtime's own
 * constructor options. Web-standard otherwise; the adapter passes what differs.
 */
export interface WebSocketClientFlavour {
  /** The second argument of `new WebSocket(url, …)`: protocols, headers, and the upstream's TLS. */
  options(protocols: string[], headers: Headers, tls: UpstreamTls | undefined): object
  /** The code to give the client's close() for a sendable one it may refuse (Deno's takes 1000 and 3000–4999 only). */
  closeCode(code: number): number
}

/** Handshake headers the client makes itself, or that the protocols list carries. */
const HANDSHAKE_OWN = ['sec-websocket-key', 'sec-websocket-version', 'sec-websocket-extensions', 'sec-websocket-protocol', 'upgrade', 'connection', 'host']

/** The offered subprotocols, from however many Sec-WebSocket-Protocol lines, split on commas. */
export function offeredProtocols(headers: Headers): string[] {
  const offered = headers.get('sec-websocket-protocol')
  if (offered === null) return []
  return offered
    .split(',')
    .map((protocol) => protocol.trim())
    .filter((protocol) => protocol !== '')
}

/** The forwarded handshake minus what the WebSocket client sends itself. */
export function forwardedHeaders(headers: Headers): Headers {
  const copy = new Headers(headers)
  for (const name of HANDSHAKE_OWN) copy.delete(name)
  return copy
}

const STATUS = /status code:?\s*(\d{3})\b/i
/** A 101 the client will not take: Bun's "Missing client protocol" when none of the offered subprotocols was chosen, a bad Accept. */
const BAD_101 = /missing client protocol|subprotocol|sec-websocket|mismatch/i
const CONNECT = /failed to connect|tcp connect|connection refused|refused|dns|resolve|unreachable|certificate|tls|ssl/i

/**
 * An UpstreamError for a handshake that failed, from the runtime's error text, the only thing the
 * WebSocket API gives: "Expected 101 status code: 403" (Bun), "Invalid status code: 403" (Deno).
 * A status means the upstream answered but refused; no connection or no trust is a connect failure.
 */
export function handshakeFailure(text: string, url: string): UpstreamError {
  const status = STATUS.exec(text)?.[1]
  if (status !== undefined) return new UpstreamError('protocol-error', `upstream refused the WebSocket handshake with ${status}`)
  if (BAD_101.test(text)) return new UpstreamError('protocol-error', `upstream's WebSocket handshake answer was refused: ${text}`)
  const failure: UpstreamFailure = CONNECT.test(text) ? 'connect-failure' : 'reset'
  return new UpstreamError(failure, `WebSocket handshake with ${url} failed: ${text}`)
}

/** A connector on the global WebSocket client with this runtime's options. */
export function webSocketClientConnector(flavour: WebSocketClientFlavour): WebSocketConnector {
  return (request) =>
    new Promise((resolve, reject) => {
      const { signal, connectTimeoutMs } = request
      if (signal.aborted) return reject(signal.reason)
      let ws: WebSocket
      try {
        const options = flavour.options(offeredProtocols(request.headers), forwardedHeaders(request.headers), request.tls)
        ws = new (WebSocket as unknown as new (url: string, options: object) => WebSocket)(request.url, options)
      } catch (error) {
        // An unreadable CA file or an unusable URL: nothing was sent.
        return reject(new UpstreamError('connect-failure', `WebSocket to ${request.url}: ${(error as Error)?.message ?? error}`, { cause: error }))
      }
      ws.binaryType = 'arraybuffer'
      let settled = false
      let errorText: string | undefined
      const settle = () => {
        settled = true
        if (timer !== undefined) clearTimeout(timer)
        signal.removeEventListener('abort', onAbort)
      }
      const fail = (error: unknown) => {
        if (settled) return
        settle()
        drop(ws)
        reject(error)
      }
      const onAbort = () => fail(signal.reason)
      signal.addEventListener('abort', onAbort, { once: true })
      // Bounds the whole handshake (connection, TLS, the upstream's 101): the API shows no step in between.
      const timer =
        connectTimeoutMs > 0
          ? setTimeout(() => fail(new UpstreamError('connect-timeout', `no WebSocket handshake with ${request.url} within ${connectTimeoutMs}ms`)), connectTimeoutMs)
          : undefined
      ws.onerror = (event) => {
        errorText = (event as ErrorEvent).message || String((event as ErrorEvent).error ?? 'error')
      }
      ws.onclose = (event) => fail(handshakeFailure(errorText ?? `closed with ${event.code} before opening`, request.url))
      ws.onopen = () => {
        if (settled) return drop(ws)
        settle()
        resolve({ accepted: true, upstream: new UpstreamLink(ws, flavour) })
      }
    })
}

function drop(ws: WebSocket): void {
  const terminate = (ws as { terminate?: () => void }).terminate
  try {
    if (terminate !== undefined) terminate.call(ws)
    else ws.close()
  } catch {}
}

/** What the runtime's WebSocket has beyond the standard API (Bun: ping, pause, terminate). */
interface ExtendedWebSocket extends WebSocket {
  ping?(data?: Uint8Array): void
  pause?(): void
  resume?(): void
  terminate?(): void
}

/**
 * An open upstream WebSocket: the session's UpstreamWebSocket and, once bridged, the bridge's upstream
 * side. Events that come before the bridge (the client's 101 is still on its way) are kept and replayed.
 */
class UpstreamLink implements BridgeableUpstream {
  readonly protocol: string
  /** The WebSocket API does not show the 101's headers: only the chosen subprotocol is known. */
  readonly headers: Headers
  readonly socket: RelaySocket
  #events: UpstreamEvents | undefined
  #early: Array<(events: UpstreamEvents) => void> | undefined = []

  constructor(ws: ExtendedWebSocket, flavour: WebSocketClientFlavour) {
    this.protocol = ws.protocol
    this.headers = new Headers(ws.protocol === '' ? undefined : { 'sec-websocket-protocol': ws.protocol })
    this.socket = {
      send: (message: RelayMessage) => ws.send(message as string | ArrayBufferView<ArrayBuffer>),
      close: (code, reason) => (code === undefined ? ws.close() : ws.close(flavour.closeCode(code), reason)),
      bufferedAmount: () => ws.bufferedAmount,
      ...(typeof ws.terminate === 'function' ? { terminate: () => ws.terminate!() } : {}),
      ...(typeof ws.pause === 'function' && typeof ws.resume === 'function' ? { pause: () => ws.pause!(), resume: () => ws.resume!() } : {}),
      ...(typeof ws.ping === 'function' ? { ping: (data: Uint8Array) => ws.ping!(data) } : {}),
    }
    ws.onmessage = (event) => this.#emit((events) => events.fromUpstream(event.data as string | ArrayBuffer))
    ws.onclose = (event) => this.#emit((events) => events.upstreamClosed(event.code, event.reason))
    ws.onerror = () => {}
    if (this.socket.ping !== undefined) {
      ws.addEventListener('ping', (event) => this.#emit((events) => events.upstreamPing(pingData(event))))
      ws.addEventListener('pong', () => this.#emit((events) => events.pong()))
    }
    this.abandon = () => {
      this.#early = undefined
      drop(ws)
    }
  }

  readonly abandon: () => void

  attach(events: UpstreamEvents): void {
    const early = this.#early ?? []
    this.#early = undefined
    this.#events = events
    for (const replay of early) replay(events)
  }

  #emit(deliver: (events: UpstreamEvents) => void): void {
    if (this.#events !== undefined) deliver(this.#events)
    else this.#early?.push(deliver)
  }
}

function pingData(event: Event): Uint8Array {
  const data = (event as MessageEvent).data as unknown
  if (data instanceof Uint8Array) return data
  if (data instanceof ArrayBuffer) return new Uint8Array(data)
  return new Uint8Array(0)
}
