/** Failures a user can cause or meet, each with one stable code used in the body, logs and metrics alike. */
export const ERROR_STATUS = {
  no_route: 404,
  upstream_unavailable: 502,
  upstream_timeout: 504,
  circuit_open: 503,
  bulkhead_full: 503,
  rate_limited: 429,
  client_closed: 499,
  internal_error: 500,
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  method_not_allowed: 405,
  request_timeout: 408,
  body_too_large: 413,
  uri_too_long: 414,
  header_too_large: 431,
  /** A WebSocket handshake on a route with [routes.websocket] enabled = false. */
  websocket_disabled: 403,
  /** A WebSocket handshake beyond the route's [routes.websocket] max_connections. */
  too_many_connections: 503,
  /** [routes.ext_authz] could not get an answer from its authorization service, and on_error = "deny". */
  authz_unavailable: 503,
  /** An abort injected by [routes.fault]; it answers with the configured status, 503 the usual one. */
  fault_injected: 503,
} as const

export type ErrorCode = keyof typeof ERROR_STATUS

/** How an upstream call failed below HTTP, for retry and breaker conditions. */
export type TransportFailure = 'connect-failure' | 'reset' | 'timeout' | 'protocol-error'

export class GatewayError extends Error {
  readonly code: ErrorCode
  readonly status: number
  readonly failure: TransportFailure | undefined
  /** Extra response headers, such as Retry-After on circuit_open. */
  headers: Record<string, string> | undefined
  /**
   * What the error log says beyond `message`, which the client gets: the endpoint's address, the
   * runtime's or a library's own words. Never part of an answer.
   */
  readonly detail: string | undefined
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; failure?: TransportFailure; detail?: string }) {
    super(message, options)
    this.name = 'GatewayError'
    this.code = code
    this.status = ERROR_STATUS[code]
    this.failure = options?.failure ?? (code === 'upstream_timeout' ? 'timeout' : undefined)
    this.detail = options?.detail
  }
}

/** A client's x-request-id is kept when it matches this (the rule of Hono's requestId middleware), else replaced. */
export const SANE_REQUEST_ID = /^[\w\-=]{1,255}$/

/**
 * A gateway-made answer: JSON body with code and request id, never a stack trace. The message is for
 * the client: it names what failed in general terms, never an endpoint address, a file path or a
 * library's message (those go in GatewayError.detail, for the error log).
 */
export function errorResponse(code: ErrorCode, message: string, requestId: string, headers?: Record<string, string>): Response {
  const responseHeaders = new Headers(headers)
  responseHeaders.set('content-type', 'application/json')
  responseHeaders.set('x-request-id', requestId)
  responseHeaders.set('x-pillion-error', code)
  const body = JSON.stringify({ code, message, request_id: requestId })
  return new Response(body, { status: ERROR_STATUS[code], headers: responseHeaders })
}

/** What a proxied request may use; a CONNECT tunnel is not carried, so its refusal lists these in Allow. */
export const PROXIED_METHODS = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS'

/**
 * The answer to CONNECT, on every runtime alike: a tunnel would hide each request from the policies,
 * so it is refused rather than forwarded (Node's server hands CONNECT to its adapter, not to the app).
 */
export function tunnelRefusal(requestId: string): Response {
  const message = 'CONNECT tunnels are not carried: send plain http:// requests (with HTTP_PROXY they arrive in absolute form) and let the upstream endpoint be https://'
  return errorResponse('method_not_allowed', message, requestId, { allow: PROXIED_METHODS })
}
