import * as v from 'valibot'
import { parseHostPort, type HostPort } from '../core/address.ts'
import { expectedGot } from '../core/config-error.ts'
import type { UpstreamTls } from '../core/host.ts'
import { besidePolicyFile } from '../core/policy-file.ts'
import { arrayOf, integer, oneOf, table, text } from '../core/schema-kit.ts'
import { convertedString, duration, type Conversion } from '../core/units.ts'
import { ENDPOINT_EXAMPLE, normalizeEndpointUrl } from './endpoint-url.ts'

/** [upstreams.<name>]: its schema, its normalized type, and the step from one to the other. */

/** Intervals and ejection times, where "0s" would mean a busy loop or nothing at all. */
function positiveInterval() {
  return v.pipe(duration(), v.check((ms) => ms > 0, 'expected a duration of at least "1ms", got "0s"'))
}

/** Envoy's outlier detection defaults: consecutive_5xx 5, base_ejection_time 30s, max_ejection_time 300s, 10%. */
const outlierSchema = v.pipe(
  table({
    consecutive_failures: v.optional(integer(1), 5),
    base_ejection: v.optional(positiveInterval(), '30s'),
    max_ejection: v.optional(positiveInterval(), '300s'),
    max_ejected_percent: v.optional(integer(1, 100), 10),
  }),
  v.forward(
    v.partialCheck(
      [['base_ejection'], ['max_ejection']],
      ({ base_ejection, max_ejection }) => max_ejection >= base_ejection,
      'expected a duration no shorter than base_ejection',
    ),
    ['max_ejection'],
  ),
)

const HEALTH_PATH_EXAMPLE = 'a path like "/healthz"'

const healthCheckSchema = table({
  path: convertedString(HEALTH_PATH_EXAMPLE, (path): Conversion<string> =>
    path.startsWith('/') && !/[#\s]/.test(path) ? { value: path } : { problem: expectedGot(HEALTH_PATH_EXAMPLE, path) },
  ),
  interval: v.optional(positiveInterval(), '5s'),
  timeout: v.optional(positiveInterval(), '1s'),
  unhealthy_threshold: v.optional(integer(1), 3),
  healthy_threshold: v.optional(integer(1), 2),
})

const SERVER_NAME_EXAMPLE = 'a DNS name like "payments.internal" (SNI cannot carry an IP address)'
const DNS_NAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i

/** The name sent as SNI and verified in the endpoint's certificate; lower-case, as certificates compare it. */
function serverName() {
  return convertedString(SERVER_NAME_EXAMPLE, (name): Conversion<string> =>
    DNS_NAME.test(name) && !/^[\d.]+$/.test(name) ? { value: name.toLowerCase() } : { problem: expectedGot(SERVER_NAME_EXAMPLE, name) },
  )
}

/** The keys that shape the TLS handshake with the endpoints: they mean nothing to http:// ones. */
const TLS_KEYS = ['ca', 'cert', 'key', 'server_name'] as const

/** The first TLS key set on an upstream whose endpoints are (or are discovered as) plain http, and why. */
function tlsOnPlainHttp(upstream: { endpoints?: string[] | undefined; discovery?: { dns?: unknown; scheme?: string | undefined } | undefined } & Partial<Record<(typeof TLS_KEYS)[number], unknown>>) {
  const key = TLS_KEYS.find((name) => upstream[name] !== undefined)
  if (key === undefined) return undefined
  const index = upstream.endpoints?.findIndex((url) => url.startsWith('http://')) ?? -1
  if (index !== -1) return { key, message: `applies to https endpoints only, and endpoints[${index}] is ${JSON.stringify(upstream.endpoints![index])}` }
  if (upstream.discovery?.dns !== undefined && upstream.discovery.scheme !== 'https') {
    return { key, message: 'applies to https endpoints only: set discovery.scheme = "https"' }
  }
  return undefined
}

const DNS_EXAMPLE = '"host:port" like "payments.internal:8080"'

/** A port is required and cannot be 0: it is where the resolved addresses are called. */
function dnsTarget() {
  return convertedString(DNS_EXAMPLE, (address): Conversion<HostPort> => {
    const parsed = parseHostPort(address)
    return parsed !== undefined && parsed.port > 0 ? { value: parsed } : { problem: expectedGot(DNS_EXAMPLE, address) }
  })
}

const discoverySchema = v.pipe(
  table({
    dns: v.optional(dnsTarget()),
    file: v.optional(text()),
    refresh: v.optional(positiveInterval(), '10s'),
    scheme: v.optional(oneOf(['http', 'https'])),
  }),
  v.check(
    ({ dns, file }) => (dns === undefined) !== (file === undefined),
    'expected exactly one of dns or file, like { dns = "payments.internal:8080" } or { file = "endpoints.json" }',
  ),
  v.forward(
    v.partialCheck([['file'], ['scheme']], ({ file, scheme }) => file === undefined || scheme === undefined, 'applies to dns only (file lists whole URLs)'),
    ['scheme'],
  ),
)

export const upstreamSchema = v.pipe(
  table({
    endpoints: v.optional(
      v.pipe(
        arrayOf(convertedString(ENDPOINT_EXAMPLE, normalizeEndpointUrl)),
        v.minLength(1, 'expected at least one endpoint, got none'),
      ),
    ),
    balance: v.optional(oneOf(['round_robin', 'least_request', 'random']), 'round_robin'),
    weights: v.optional(
      arrayOf(v.pipe(v.number(), v.check((weight) => Number.isSafeInteger(weight) && weight > 0, (issue) => expectedGot('a positive integer', issue.input)))),
    ),
    protocol: v.optional(oneOf(['http1', 'h2c', 'h2']), 'http1'),
    connect_timeout: v.optional(duration(), '1s'),
    ca: v.optional(text()),
    cert: v.optional(text()),
    key: v.optional(text()),
    server_name: v.optional(serverName()),
    outlier: v.optional(v.union([outlierSchema, v.literal(false)], (issue) => expectedGot('a table like { consecutive_failures = 5 }, or false', issue.input))),
    retry_connect_failure: v.optional(v.boolean((issue) => expectedGot('true or false', issue.input)), true),
    health_check: v.optional(healthCheckSchema),
    discovery: v.optional(discoverySchema),
  }),
  // One source of endpoints: a static seed that discovery silently replaces would be a surprise.
  v.forward(
    v.partialCheck(
      [['endpoints'], ['discovery']],
      ({ endpoints, discovery }) => endpoints !== undefined || discovery !== undefined,
      'required key missing (or set discovery)',
    ),
    ['endpoints'],
  ),
  v.forward(
    v.partialCheck(
      [['endpoints'], ['discovery']],
      ({ endpoints, discovery }) => endpoints === undefined || discovery === undefined,
      'expected endpoints or discovery, not both',
    ),
    ['discovery'],
  ),
  // A certificate is presented with its key: one without the other is a typo, not a choice.
  v.forward(
    v.partialCheck([['cert'], ['key']], ({ cert, key }) => cert !== undefined || key === undefined, 'required key missing (key is set: the client certificate it belongs to)'),
    ['cert'],
  ),
  v.forward(
    v.partialCheck([['cert'], ['key']], ({ cert, key }) => key !== undefined || cert === undefined, 'required key missing (cert is set: its private key)'),
    ['key'],
  ),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return
    const problem = tlsOnPlainHttp(dataset.value)
    if (problem === undefined) return
    addIssue({
      message: problem.message,
      path: [{ type: 'object', origin: 'value', input: dataset.value, key: problem.key, value: dataset.value[problem.key] }],
    })
  }),
  v.forward(
    v.partialCheck(
      [['endpoints'], ['weights']],
      ({ endpoints, weights }) => weights === undefined || weights.length === endpoints?.length,
      (issue) =>
        issue.input.endpoints === undefined
          ? 'applies to endpoints only (a discovery file gives each endpoint its own weight)'
          : `expected ${issue.input.endpoints.length} weights, one per endpoint, got ${issue.input.weights?.length}`,
    ),
    ['weights'],
  ),
  // h2c is cleartext and h2 is TLS: the endpoints' scheme has to agree, or the first call would fail.
  v.forward(
    v.partialCheck(
      [['endpoints'], ['protocol']],
      ({ endpoints, protocol }) => protocolMismatch(protocol, endpoints ?? []) === undefined,
      (issue) => protocolMismatch(issue.input.protocol, issue.input.endpoints ?? [])!,
    ),
    ['protocol'],
  ),
)

function protocolMismatch(protocol: string, endpoints: string[]): string | undefined {
  const wanted = protocol === 'h2c' ? 'http://' : protocol === 'h2' ? 'https://' : undefined
  const wrong = wanted === undefined ? undefined : endpoints.find((url) => !url.startsWith(wanted))
  if (wrong === undefined) return undefined
  return protocol === 'h2c'
    ? `h2c is HTTP/2 in cleartext, but endpoint ${wrong} is https://: write protocol = "h2" for HTTP/2 over TLS`
    : `h2 is HTTP/2 over TLS, but endpoint ${wrong} is http://: write protocol = "h2c" for cleartext HTTP/2`
}

type UpstreamFile = v.InferOutput<typeof upstreamSchema>

export function normalizeUpstream(name: string, upstream: UpstreamFile, source: string): UpstreamConfig {
  const { endpoints = [], weights, outlier, health_check, discovery } = upstream
  const normalized: UpstreamConfig = {
    name,
    endpoints: endpoints.map((url, index) => ({ url, weight: weights?.[index] ?? 1 })),
    balance: upstream.balance,
    connectTimeoutMs: upstream.connect_timeout,
    retryConnectFailure: upstream.retry_connect_failure,
  }
  if (upstream.protocol !== 'http1') normalized.protocol = upstream.protocol
  const tls = upstreamTls(upstream, source)
  if (tls !== undefined) normalized.tls = tls
  if (outlier === undefined) normalized.outlier = DEFAULT_OUTLIER
  else if (outlier !== false) {
    normalized.outlier = {
      consecutiveFailures: outlier.consecutive_failures,
      baseEjectionMs: outlier.base_ejection,
      maxEjectionMs: outlier.max_ejection,
      maxEjectedPercent: outlier.max_ejected_percent,
    }
  }
  if (health_check !== undefined) {
    normalized.healthCheck = {
      path: health_check.path,
      intervalMs: health_check.interval,
      timeoutMs: health_check.timeout,
      unhealthyThreshold: health_check.unhealthy_threshold,
      healthyThreshold: health_check.healthy_threshold,
    }
  }
  if (discovery?.dns !== undefined) {
    const { host, port } = discovery.dns
    normalized.discovery = { dns: { host, port, scheme: discovery.scheme ?? 'http', refreshMs: discovery.refresh } }
  } else if (discovery?.file !== undefined) {
    normalized.discovery = { file: { path: besidePolicyFile(discovery.file, source), refreshMs: discovery.refresh } }
  }
  return normalized
}

function upstreamTls(upstream: UpstreamFile, source: string): UpstreamTls | undefined {
  const tls: UpstreamTls = {}
  if (upstream.ca !== undefined) tls.ca = besidePolicyFile(upstream.ca, source)
  if (upstream.cert !== undefined && upstream.key !== undefined) {
    tls.cert = besidePolicyFile(upstream.cert, source)
    tls.key = besidePolicyFile(upstream.key, source)
  }
  if (upstream.server_name !== undefined) tls.serverName = upstream.server_name
  return Object.keys(tls).length === 0 ? undefined : tls
}

export type BalanceMode = 'round_robin' | 'least_request' | 'random'

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

/**
 * Passive health when an upstream says nothing of it (`outlier = false` turns it off). Five failures
 * in a row as Envoy (NGINX's max_fails=1 ejects on one blip; Linkerd waits for 7); out for 10s at
 * first as NGINX's fail_timeout, doubling up to Linkerd's 60s; never more than half the endpoints.
 */
export const DEFAULT_OUTLIER: OutlierPolicy = Object.freeze({ consecutiveFailures: 5, baseEjectionMs: 10_000, maxEjectionMs: 60_000, maxEjectedPercent: 50 })

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
  /**
   * A GET, HEAD, OPTIONS, PUT or DELETE without a body whose connect failed (so it never reached the
   * service) is tried once more on another endpoint, unless the route has its own retry policy.
   */
  retryConnectFailure: boolean
  /** Absent: HTTP/1.1. h2c: HTTP/2 in cleartext with prior knowledge; h2: HTTP/2 over TLS (ALPN h2 only). */
  protocol?: 'h2c' | 'h2'
  /** `ca`, `cert`/`key` (the client certificate) and `server_name`; files resolved against the policy file. */
  tls?: UpstreamTls
  outlier?: OutlierPolicy
  healthCheck?: HealthCheckPolicy
  discovery?: DiscoveryConfig
}
