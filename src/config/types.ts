import type { ControlConfig } from './control.ts'

/** The normalized, validated policy: every duration is milliseconds, every size bytes, every rate per second. */
import type { ApiKeyPolicy, CorsPolicy, IpPolicy, JwtPolicy, LimitsPolicy, ListenerTls, SecureHeadersPolicy } from '../security/types.ts'

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
  /** CIDRs whose X-Forwarded-For is believed; absent: none (the TCP peer is the client). */
  trustedProxies?: string[]
  /** Environment variable holding the admin bearer token; required when admin is not on loopback. */
  adminTokenEnv?: string
}

export interface ListenerConfig extends HostPort {
  name: string
  direction: Direction
  tls?: ListenerTls
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
  /** PEM file of the CA that signs https endpoints' certificates (instead of the system's); resolved against the policy file. */
  ca?: string
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

/** What a rate limit counts requests by; a request without the value counts against one shared "absent" bucket. */
export type RateLimitKey =
  | { from: 'client_ip' }
  | { from: 'route' }
  | { from: 'header'; name: string } // lower-case
  | { from: 'jwt'; claim: string }

export type RateLimitAlgorithm =
  | { kind: 'token_bucket'; ratePerSecond: number; burst: number }
  | { kind: 'fixed_window'; limit: number; windowMs: number }

export interface RateLimitPolicy {
  /** In RateLimit-Policy and Redis keys; default "limit-N" (its zero-based place in the list). */
  name: string
  key: RateLimitKey
  algorithm: RateLimitAlgorithm
  /** Counts and reports what it would reject, rejects nothing. */
  dryRun: boolean
  store: 'local' | 'redis'
  /** Local store only: most keys held at once; the least recently used goes first. */
  maxKeys: number
}

/** [redis]: where store = "redis" limits count, shared by every replica. */
export interface RedisSettings {
  url: string
  onError: 'allow' | 'deny'
  timeoutMs: number
}

export interface BulkheadPolicy {
  maxConcurrent: number
  maxQueue: number
  queueTimeoutMs: number
}

/** A shadow copy of the request to another upstream, never waited on. */
export interface MirrorPolicy {
  upstream: string
  percent: number // 0–100, fractions allowed
  maxInFlight: number // copies beyond this are dropped
  maxBodyBytes: number // larger request bodies are not copied
  timeoutMs: number // the copy's own deadline
}

/** Injected delays and aborts; percentages 0–100, fractions allowed. */
export interface FaultPolicy {
  delay?: { percent: number; durationMs: number }
  abort?: { percent: number; status: number }
  /** x-pillion-fault-delay / x-pillion-fault-abort request headers inject per request. */
  headerControl: boolean
}

/** Policies a route may set itself or inherit from [defaults]; a route's table replaces the default's whole. */
export interface RoutePolicies {
  timeoutMs: number
  retry?: RetryPolicy
  circuitBreaker?: CircuitBreakerPolicy
  fallback?: FallbackPolicy
  bulkhead?: BulkheadPolicy
  rateLimits?: RateLimitPolicy[]
  mirror?: MirrorPolicy
  fault?: FaultPolicy
  cors?: CorsPolicy
  secureHeaders?: SecureHeadersPolicy
  stripResponseHeaders?: string[] // lower-case
  ip?: IpPolicy
  limits?: LimitsPolicy
  jwt?: JwtPolicy
  apiKey?: ApiKeyPolicy
}

/** What a sticky split hashes: a request header, a cookie, or the client's address. */
export type StickyKey = { kind: 'header'; name: string } | { kind: 'cookie'; name: string } | { kind: 'client_ip' }

/** Weighted version routing: each request goes to one of these upstreams. */
export interface SplitPolicy {
  /** In file order; whole-number weights, at least one above zero. */
  backends: Array<{ upstream: string; weight: number }>
  sticky?: StickyKey
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
  /** The route's upstream; for a split route, the first split entry (the split picks per request). */
  upstream: string
  split?: SplitPolicy
  policies: RoutePolicies
}

/** [audit]: one record per request, sent in batches to a sink off the request path. */
export interface AuditConfig {
  sink: string
  batch: number
  flushMs: number
  maxQueue: number // records held, the batch being sent included
  /** Route names to audit; undefined means every route. */
  routes?: string[]
  headers: string[] // request headers copied into each record, lower-case
  timeoutMs: number // each POST to the sink
  backoff: { baseMs: number; maxMs: number }
}

/** [observability]: where access log lines go and which fields they carry; where spans are exported. */
export interface AccessLogConfig {
  /** "stdout", "off", or a file path (resolved against the policy file's directory). */
  to: string
  fields: string[]
}

export interface TracesConfig {
  /** OTLP/HTTP traces endpoint, JSON encoding. */
  otlp: string
  /** Share of traces this gateway starts that are sampled, 0–1; a caller's decision always wins. */
  sample: number
  serviceName: string
  headers: Array<[name: string, value: string]>
  flushMs: number
  maxQueue: number
}

export interface ObservabilityConfig {
  accessLog: AccessLogConfig
  traces?: TracesConfig
}

export interface Config {
  /** The file the config came from, as given. */
  source: string
  gateway: GatewaySettings
  listeners: Record<string, ListenerConfig>
  upstreams: Record<string, UpstreamConfig>
  defaults: Partial<RoutePolicies>
  routes: RouteConfig[]
  /** Absent when the file has no [observability]: every default (access log on stdout, no trace export). */
  observability?: ObservabilityConfig
  audit?: AuditConfig
  control?: ControlConfig
  redis?: RedisSettings
}
