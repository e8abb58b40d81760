import * as v from 'valibot'
import { expectedGot } from '../core/config-error.ts'
import { arrayOf, fraction, integer, table, text } from '../core/schema-kit.ts'
import { convertedString, duration, type Conversion } from '../core/units.ts'

/**
 * [observability]: access log and trace export. Metrics need no settings: GET /metrics on the admin
 * listener is always there. A file without the table gets `defaultObservability`.
 */

/** Every field an access log line can carry, in the order a line shows them. */
export const ACCESS_LOG_FIELDS = [
  'time',
  'request_id',
  'trace_id',
  'span_id',
  'route',
  'method',
  'host',
  'path',
  'query',
  'status',
  'code',
  'authz',
  'grpc_status',
  'upstream',
  'endpoint',
  'bytes_in',
  'bytes_out',
  'duration_ms',
  'upstream_ms',
  'attempts',
  'retries',
  'fallback',
  'fault',
  'client',
  'user_agent',
] as const

export type AccessLogField = (typeof ACCESS_LOG_FIELDS)[number]

/** Left out by default: the query may carry secrets, the client's address and user agent are personal data. */
export const DEFAULT_ACCESS_LOG_FIELDS: readonly AccessLogField[] = [
  'time',
  'request_id',
  'trace_id',
  'route',
  'method',
  'path',
  'status',
  'code',
  'authz',
  'grpc_status',
  'upstream',
  'endpoint',
  'bytes_in',
  'bytes_out',
  'duration_ms',
  'upstream_ms',
  'retries',
]

/** Istio's default random sampling: in a mesh the edge decides, and a caller's decision always wins. */
export const DEFAULT_SAMPLE = 0.01
/** OpenTelemetry's BatchSpanProcessor defaults: scheduledDelayMillis 5000, maxQueueSize 2048. */
export const DEFAULT_TRACE_FLUSH_MS = 5000
export const DEFAULT_TRACE_QUEUE = 2048

const ACCESS_LOG_TO_EXAMPLE = '"stdout", "off" or a file path like "/var/log/pillion/access.log"'

const accessLogSchema = table({
  to: v.optional(
    convertedString(ACCESS_LOG_TO_EXAMPLE, (to): Conversion<string> =>
      /\S/.test(to) ? { value: to } : { problem: expectedGot(ACCESS_LOG_TO_EXAMPLE, to) },
    ),
    'stdout',
  ),
  fields: v.optional(
    v.pipe(
      arrayOf(
        v.picklist(ACCESS_LOG_FIELDS, (issue) =>
          expectedGot(`a field name (${ACCESS_LOG_FIELDS.join(', ')})`, issue.input),
        ),
      ),
      v.minLength(1, 'expected at least one field (to turn the log off, set to = "off")'),
    ),
  ),
})

const OTLP_EXAMPLE = 'an http(s) URL like "http://127.0.0.1:4318/v1/traces"'

function otlpUrl(): ReturnType<typeof convertedString<string>> {
  return convertedString(OTLP_EXAMPLE, (text): Conversion<string> => {
    let url: URL
    try {
      url = new URL(text)
    } catch {
      return { problem: expectedGot(OTLP_EXAMPLE, text) }
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return { problem: expectedGot(OTLP_EXAMPLE, text) }
    return { value: url.href }
  })
}

const tracesSchema = table({
  otlp: otlpUrl(),
  sample: v.optional(fraction(), DEFAULT_SAMPLE),
  service_name: v.optional(text()),
  headers: v.optional(
    v.record(v.string(), v.string((issue) => expectedGot('a string', issue.input)), (issue) =>
      expectedGot('a table like { "authorization" = "Bearer ..." }', issue.input),
    ),
  ),
  flush: v.optional(
    v.pipe(duration(), v.check((ms) => ms > 0, 'expected a duration of at least "1ms", got "0s"')),
    `${DEFAULT_TRACE_FLUSH_MS}ms`,
  ),
  max_queue: v.optional(integer(1), DEFAULT_TRACE_QUEUE),
})

export const observabilitySchema = table({
  access_log: v.optional(accessLogSchema),
  traces: v.optional(tracesSchema),
})

export type ObservabilityFile = v.InferOutput<typeof observabilitySchema>

/** What a file without [observability] gets: the access log on stdout, no trace export. */
export function defaultObservability(): ObservabilityConfig {
  return { accessLog: { to: 'stdout', fields: [...DEFAULT_ACCESS_LOG_FIELDS] } }
}

/**
 * The normalized table. `resolve` places a relative log path next to the policy file, as
 * discovery files are; `service` names the traces' service unless service_name does.
 */
export function normalizeObservability(file: ObservabilityFile, service: string, resolve: (path: string) => string): ObservabilityConfig {
  const to = file.access_log?.to ?? 'stdout'
  const accessLog: AccessLogConfig = {
    to: to === 'stdout' || to === 'off' ? to : resolve(to),
    fields: [...(file.access_log?.fields ?? DEFAULT_ACCESS_LOG_FIELDS)],
  }
  const normalized: ObservabilityConfig = { accessLog }
  if (file.traces !== undefined) {
    const { otlp, sample, service_name, headers, flush, max_queue } = file.traces
    const traces: TracesConfig = {
      otlp,
      sample,
      serviceName: service_name ?? service,
      headers: Object.entries(headers ?? {}).map(([name, value]): [string, string] => [name.toLowerCase(), value]),
      flushMs: flush,
      maxQueue: max_queue,
    }
    normalized.traces = traces
  }
  return normalized
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

/** What observability reads of a whole config: its own table, and each route's name, path and direction. */
export interface ObservedConfig {
  observability?: ObservabilityConfig
  routes: ReadonlyArray<{ name: string; listener: string; path: string }>
  listeners: Readonly<Record<string, { direction: 'ingress' | 'egress' }>>
}

export interface ObservabilityConfig {
  accessLog: AccessLogConfig
  traces?: TracesConfig
}
