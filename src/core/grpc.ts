import type { ErrorCode } from './errors.ts'

/** gRPC status codes (grpc/grpc doc/statuscodes.md) that the gateway's own answers use. */
export const GRPC_CODE = {
  OK: 0,
  CANCELLED: 1,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const

/**
 * The grpc-status a gateway error becomes when the client speaks gRPC. The mapping is Envoy's and
 * gRPC's own HTTP-to-gRPC table (grpc/grpc doc/http-grpc-status-mapping.md) where they agree.
 */
export const GRPC_STATUS_OF: Record<ErrorCode, number> = {
  no_route: GRPC_CODE.UNIMPLEMENTED,
  upstream_unavailable: GRPC_CODE.UNAVAILABLE,
  upstream_timeout: GRPC_CODE.DEADLINE_EXCEEDED,
  circuit_open: GRPC_CODE.UNAVAILABLE,
  bulkhead_full: GRPC_CODE.UNAVAILABLE,
  rate_limited: GRPC_CODE.RESOURCE_EXHAUSTED,
  client_closed: GRPC_CODE.CANCELLED,
  internal_error: GRPC_CODE.INTERNAL,
  bad_request: GRPC_CODE.INVALID_ARGUMENT,
  unauthorized: GRPC_CODE.UNAUTHENTICATED,
  forbidden: GRPC_CODE.PERMISSION_DENIED,
  method_not_allowed: GRPC_CODE.UNIMPLEMENTED,
  request_timeout: GRPC_CODE.DEADLINE_EXCEEDED,
  body_too_large: GRPC_CODE.RESOURCE_EXHAUSTED,
  uri_too_long: GRPC_CODE.RESOURCE_EXHAUSTED,
  header_too_large: GRPC_CODE.RESOURCE_EXHAUSTED,
  websocket_disabled: GRPC_CODE.PERMISSION_DENIED,
  too_many_connections: GRPC_CODE.RESOURCE_EXHAUSTED,
  fault_injected: GRPC_CODE.UNAVAILABLE,
  authz_unavailable: GRPC_CODE.UNAVAILABLE,
}

/** grpc-status codes that gRPC's HTTP mapping makes a 5xx: UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS. */
const SERVER_FAILURES = new Set(['2', '4', '12', '13', '14', '15'])

/** Whether a trailers-only answer's headers carry a grpc-status that counts against the endpoint (outlier detection). */
export function isGrpcServerFailure(headers: Headers): boolean {
  const status = headers.get('grpc-status')
  return status !== null && SERVER_FAILURES.has(status)
}

/** Whether the request is a gRPC call (application/grpc, +proto, +json, ...), which wants gRPC-shaped errors. */
export function isGrpcRequest(headers: Headers): boolean {
  const type = headers.get('content-type')
  return type !== null && type.startsWith('application/grpc')
}

/** grpc-message is percent-encoded UTF-8: every byte outside printable ASCII, and "%" itself (gRPC over HTTP/2 spec). */
export function encodeGrpcMessage(message: string): string {
  let encoded = ''
  for (const byte of new TextEncoder().encode(message)) {
    encoded += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return encoded
}

/**
 * A gateway error the gRPC way: HTTP 200 and a trailers-only answer (no body; the status in the
 * headers, which an HTTP/2 server sends as one HEADERS frame that ends the stream). x-pillion-error
 * and x-request-id stay, as on the JSON answers.
 */
export function grpcErrorResponse(code: ErrorCode, message: string, requestId: string, headers?: Record<string, string>): Response {
  const responseHeaders = new Headers(headers)
  responseHeaders.delete('content-length')
  responseHeaders.set('content-type', 'application/grpc')
  responseHeaders.set('grpc-status', String(GRPC_STATUS_OF[code]))
  responseHeaders.set('grpc-message', encodeGrpcMessage(message))
  responseHeaders.set('x-request-id', requestId)
  responseHeaders.set('x-pillion-error', code)
  return new Response(null, { status: 200, headers: responseHeaders })
}
