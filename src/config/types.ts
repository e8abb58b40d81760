import type { ControlConfig } from '../control/settings.ts'

/** The normalized, validated policy: every duration is milliseconds, every size bytes, every rate per second. */

export type Direction = 'ingress' | 'egress'
export type BalanceMode = 'round_robin' | 'least_request' | 'random'

export interface HostPort {
  host: string // without brackets for IPv6, e.g. "::1"
  port: number
}

export interface GatewaySettings {
  service: string
  admin: HostPort
  shutdownGraceMs: number
}

export interface ListenerConfig extends HostPort {
  name: string
  direction: Direction
}

export interface EndpointConfig {
  /** Origin plus optional base path, no trailing slash: "http://127.0.0.1:3000" or "http://h:1/base" */
  url: string
  weight: number
}

/** Passive health: an endpoint that keeps failing is ejected for a while (Envoy's outlier detection). */
export interface OutlierPolicy {
  consecutiveFailures: number // default 5 (Envoy consecutive_5xx)
  baseEjectionMs: number // default 30s, multiplied by the times ejected, capped at maxEjectionMs
  maxEjectionMs: number // default 300s (Envoy max_ejection_time)
  maxEjectedPercent: number // default 10 (Envoy), but at least one endpoint may always be ejected
}

/** Active health: GET path on every endpoint every interval. */
export interface HealthCheckPolicy {
  path: string
  intervalMs: number // default 5s
  timeoutMs: number // default 1s
  unhealthyThreshold: number // default 3
  healthyThreshold: number // default 2
}

/**
 * Where endpoints come from when not listed. A file path is already resolved against the policy
 * file's directory; its refreshMs is a re-read that backs up watching.
 */
export type DiscoveryConfig =
  | { dns: { host: string; port: number; scheme: 'http' | 'https'; refreshMs: number } }
  | { file: { path: string; refreshMs: number } }

export interface UpstreamConfig {
  name: string
  /** The static list; empty when discovery supplies the endpoints. */
  endpoints: EndpointConfig[]
  balance: BalanceMode
  connectTimeoutMs: number
  outlier?: OutlierPolicy
  healthCheck?: HealthCheckPolicy
  discovery?: DiscoveryConfig
}

/**
 * What a retry, breaker or fallback counts as a failed call. Strings from the policy file:
 * "5xx", "gateway-error" (502, 503, 504), "retriable-4xx" (409), "connect-failure", "reset",
 * "timeout", or an explicit status like "429".
 */
export type FailureCondition = string

export interface RetryPolicy {
  attempts: number // total tries including the first
  perTryTimeoutMs: number // 0: each try may use what is left of the route timeout
  backoff: { baseMs: number; maxMs: number } // exponential with full jitter
  on: FailureCondition[]
  methods: string[] // upper-case
  idempotencyKey: boolean // also retry any method when the request carries Idempotency-Key
  budget: { ratio: number; minPerSecond: number; ttlMs: number }
  maxBodyBytes: number // larger request bodies are streamed once and never retried
}

export interface CircuitBreakerPolicy {
  /** Exactly one of windowMs (sliding time window) and windowRequests (last N calls) is set. */
  windowMs?: number
  windowRequests?: number
  minRequests: number
  failureRate: number
  slowCall?: { durationMs: number; rate: number }
  openForMs: number
  halfOpenRequests: number
  failures: FailureCondition[]
}

export interface FallbackPolicy {
  /** Serve the last good GET/HEAD 2xx response for this method+path if younger than this. */
  staleMs?: number
  /** Send the request to this upstream instead. */
  upstream?: string
  /** A fixed answer; set when status or body is given. */
  static?: { status: number; contentType: string; body: string }
}

export interface BulkheadPolicy {
  maxConcurrent: number
  maxQueue: number
  queueTimeoutMs: number
}

/** Policies a route may set itself or inherit from [defaults]; a route's table replaces the default's whole. */
export interface RoutePolicies {
  timeoutMs: number
  retry?: RetryPolicy
  circuitBreaker?: CircuitBreakerPolicy
  fallback?: FallbackPolicy
  bulkhead?: BulkheadPolicy
}

export interface RouteConfig {
  index: number
  name: string
  listener: string
  host?: string // lower-case, without port
  path: string
  methods?: string[] // upper-case
  headers?: Array<[name: string, value: string]> // name lower-case
  stripPrefix?: string
  upstream: string
  policies: RoutePolicies
}

export interface Config {
  /** The file the config came from, as given. */
  source: string
  gateway: GatewaySettings
  listeners: Record<string, ListenerConfig>
  upstreams: Record<string, UpstreamConfig>
  defaults: Partial<RoutePolicies>
  routes: RouteConfig[]
  control?: ControlConfig
}
