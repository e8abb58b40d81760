/** Failures a user can cause or meet, each with one stable code used in the body, logs and metrics alike. */
export const ERROR_STATUS = {
  no_route: 404,
  upstream_unavailable: 502,
  upstream_timeout: 504,
  client_closed: 499,
  internal_error: 500,
} as const

export type ErrorCode = keyof typeof ERROR_STATUS

export class GatewayError extends Error {
  readonly code: ErrorCode
  readonly status: number
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'GatewayError'
    this.code = code
    this.status = ERROR_STATUS[code]
  }
}

/** A gateway-made answer: JSON body with code and request id, never a stack trace. */
export function errorResponse(code: ErrorCode, message: string, requestId: string, headers?: HeadersInit): Response {
  const responseHeaders = new Headers(headers)
  responseHeaders.set('content-type', 'application/json')
  responseHeaders.set('x-request-id', requestId)
  responseHeaders.set('x-pillion-error', code)
  const body = JSON.stringify({ code, message, request_id: requestId })
  return new Response(body, { status: ERROR_STATUS[code], headers: responseHeaders })
}
