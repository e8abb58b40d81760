import type { Abortable } from './cancel.ts'
import type { UpstreamAnswer, UpstreamTls } from './host.ts'

/**
 * The WebSocket seam between the web-standard core and the runtime adapters. The handshake is an
 * ordinary request through the listener and the route's chain (so ip, jwt, rate limits, retries
 * and breakers apply to it); at the bottom, the forwarder asks the runtime to open the upstream
 * side, and once the upstream has answered 101 the chain's answer carries a WebSocketSession. The
 * adapter that served the request sees it (sessionOf), upgrades the client with the headers of
 * that answer, and bridges the two sides until one closes.
 */

/** What the core asks the runtime to open: the upstream side, before the client's is upgraded. */
export interface WebSocketConnectRequest {
  /** ws:// or wss:// URL of the endpoint, path and query included. */
  url: string
  /**
   * The handshake as the proxy forwards it: the client's end-to-end headers (Sec-WebSocket-Key,
   * -Version and -Protocol included, -Extensions removed), X-Forwarded-*, Via and x-request-id.
   * An adapter that speaks WebSocket itself to the upstream drops Key and Version and offers the
   * protocols; one that relays bytes sends them as they are.
   */
  headers: Headers
  signal: Abortable
  connectTimeoutMs: number
  /** How to meet a wss:// endpoint: whom to trust, which certificate to present, which name to verify. */
  tls?: UpstreamTls
}

/** The upstream's side once its 101 came, owned by the adapter that opened it until it bridges it. */
export interface UpstreamWebSocket {
  /** The subprotocol the upstream chose; '' for none. */
  readonly protocol: string
  /** The upstream's 101 headers, as received. */
  readonly headers: Headers
  /** Drops the upstream connection when the client never gets its 101 (it left, or a layer refused). */
  abandon(): void
}

/** How the upstream answered the handshake: 101, or an ordinary answer to pass on (Node knows it exactly). */
export type WebSocketHandshake = { accepted: true; upstream: UpstreamWebSocket } | { accepted: false; answer: UpstreamAnswer }

/** Opens the upstream side of a WebSocket; rejects with an UpstreamError like the HTTP client does. */
export type WebSocketConnector = (request: WebSocketConnectRequest) => Promise<WebSocketHandshake>

/** Who ended a bridged connection: a side's close frame or disconnect, or the gateway (idle, too big, shutdown). */
export type WebSocketCloser = 'client' | 'upstream' | 'gateway'

/** How one bridged connection ended, and what passed through it. */
export interface WebSocketClose {
  /** The close code sent on, 1005 when the closing side gave none, 1006 when it just went away. */
  code: number
  reason: string
  by: WebSocketCloser
  /** Client to upstream. */
  messagesIn: number
  bytesIn: number
  /** Upstream to client. */
  messagesOut: number
  bytesOut: number
}

/** Close codes the gateway itself sends (RFC 6455 §7.4.1). */
export const CLOSE_GOING_AWAY = 1001
export const CLOSE_MESSAGE_TOO_BIG = 1009

/** What the route's websocket policy lets an admitted handshake do; the forwarder makes the session of it. */
export interface WebSocketTerms {
  /** A message larger than this (fragments added up) closes both sides with 1009. */
  maxMessageBytes: number
  /** No message or control frame either way for this long closes both sides with 1001; 0 is off. */
  idleTimeoutMs: number
  /** Told exactly once when the bridge ends; the gateway counts, logs and frees the route's slot. */
  closed(close: WebSocketClose): void
}

/** One accepted WebSocket: what an adapter needs to bridge the client to the upstream. */
export interface WebSocketSession extends WebSocketTerms {
  upstream: UpstreamWebSocket
  route: string
}

const sessions = new WeakMap<Response, WebSocketSession>()

/**
 * The chain's answer for an accepted handshake. A 101 Response cannot be made on every runtime
 * (Node's throws), so it is a 200 whose headers are those of the client's 101: the upstream's
 * end-to-end ones (the chosen Sec-WebSocket-Protocol, Set-Cookie) and whatever layers add on the
 * way out (x-request-id, CORS). The adapter recognises it with sessionOf.
 */
export function upgradeResponse(session: WebSocketSession, headers: Headers): Response {
  const response = new Response(null, { status: 200, headers })
  sessions.set(response, session)
  return response
}

/** The session an answer carries when the adapter must upgrade the client instead of sending it. */
export function sessionOf(response: Response): WebSocketSession | undefined {
  return sessions.get(response)
}

/** Whether a request asks to become a WebSocket (RFC 6455 §4.1): GET with Upgrade: websocket and Connection: upgrade. */
export function isWebSocketRequest(method: string, headers: Headers): boolean {
  if (method !== 'GET') return false
  const upgrade = headers.get('upgrade')
  if (upgrade === null || upgrade.toLowerCase() !== 'websocket') return false
  const connection = headers.get('connection')
  return connection !== null && /(?:^|,)\s*upgrade\s*(?:,|$)/i.test(connection)
}

declare module './host.ts' {
  interface Runtime {
    /** Opens the upstream side of a WebSocket (src/runtime/); the adapter's server bridges it to the client. */
    websocket: WebSocketConnector
  }
}
