import type { ErrorCode } from '../core/errors.ts'
import type { Exchange } from '../proxy/exchange.ts'

/** What happened to one request, handed to every observer once its response has ended. */
export interface RequestRecord {
  requestId: string
  /** undefined when no route matched. */
  route: string | undefined
  method: string
  path: string
  status: number
  /** The gateway's error code when the gateway answered for the upstream (no_route, upstream_timeout...). */
  code: ErrorCode | undefined
  /** Wall-clock start, ms since the epoch. */
  startedAt: number
  durationMs: number
  /** Response body bytes delivered to the client. */
  bytesOut: number
  clientAddress: string
  /** Set once a route matched: the exchange, for upstream, endpoint, attempts, timings and the rest. */
  exchange: Exchange | undefined
  /** The client's request, for headers an observer reads (trace context, user agent, content length). */
  request: Request
  /** A gRPC call's grpc-status: the upstream's (trailers, or headers when trailers-only) or the gateway's own. */
  grpcStatus?: number
}

/**
 * Metrics, access logs, traces and audit subscribe to requests through this; the request path calls
 * them and never waits on them, so an observer must not block (queue and flush elsewhere).
 */
export interface RequestObserver {
  /** A route matched and the exchange is about to enter its chain. */
  onRequest?(exchange: Exchange): void
  /** The response has been delivered, failed or been cancelled. */
  onResponse(record: RequestRecord): void
}
