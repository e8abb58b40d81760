import type { Exchange } from '../proxy/exchange.ts'
import type { RequestObserver, RequestRecord } from './observer.ts'
import { formatB3, formatTraceparent, incomingContext, randomId } from './trace-context.ts'
import type { ObservedConfig, TracesConfig } from './config.ts'

/** OTLP span kinds (opentelemetry-proto trace.proto). */
export const SPAN_KIND = { server: 2, client: 3 } as const
/** OTLP status codes: unset, ok, error. */
export const STATUS_CODE = { unset: 0, ok: 1, error: 2 } as const

/** One request's span while it is open: what we forwarded upstream, and whether it is recorded. */
export interface SpanContext {
  traceId: string
  spanId: string
  /** The caller's span, when it sent one. */
  parentSpanId: string | undefined
  sampled: boolean
}

export type AttributeValue = string | number | boolean

/** A finished span, as it goes to the exporter. */
export interface FinishedSpan {
  traceId: string
  spanId: string
  parentSpanId: string | undefined
  name: string
  kind: number
  startMs: number
  endMs: number
  attributes: Array<[string, AttributeValue]>
  status: { code: number; message?: string }
}

interface RouteTrace {
  kind: number
  /** The route's path pattern, http.route in the semantic conventions. */
  pattern: string
}

export interface TracerOptions {
  sample: number
  export(span: FinishedSpan): void
  random?: () => number
}

/**
 * Continues the caller's trace (W3C traceparent, else B3) or starts one, and makes one span per
 * request: SERVER on ingress listeners, CLIENT on egress ones, as Envoy does. Its span id goes
 * upstream as the parent; tracestate passes through untouched. Sampling is parent-based: the
 * caller's flag decides, and `sample` decides only for traces that start here.
 */
export class Tracer implements RequestObserver {
  readonly #spans = new WeakMap<Exchange, SpanContext>()
  #routes = new Map<string, RouteTrace>()
  #sample: number
  readonly #export: (span: FinishedSpan) => void
  readonly #random: () => number

  constructor(options: TracerOptions) {
    this.#sample = options.sample
    this.#export = options.export
    this.#random = options.random ?? Math.random
  }

  /** Per-config facts: each route's listener direction and path pattern, and the sample rate. */
  apply(config: ObservedConfig, traces: TracesConfig): void {
    const routes = new Map<string, RouteTrace>()
    for (const route of config.routes) {
      const direction = config.listeners[route.listener]?.direction
      routes.set(route.name, { kind: direction === 'egress' ? SPAN_KIND.client : SPAN_KIND.server, pattern: route.path })
    }
    this.#routes = routes
    this.#sample = traces.sample
  }

  onRequest(exchange: Exchange): void {
    const incoming = incomingContext(exchange.request.headers)
    const parent = incoming.context
    const sampled = parent?.sampled ?? incoming.sampled ?? this.#random() < this.#sample
    const traceId = parent?.traceId ?? randomId(16)
    const spanId = randomId(8)
    exchange.setUpstreamHeader('traceparent', formatTraceparent(traceId, spanId, sampled))
    if (incoming.b3) exchange.setUpstreamHeader('b3', formatB3(traceId, spanId, sampled))
    this.#spans.set(exchange, { traceId, spanId, parentSpanId: parent?.spanId, sampled })
  }

  /** The span a request ran in, for the access log's trace_id and span_id. */
  contextOf(exchange: Exchange): SpanContext | undefined {
    return this.#spans.get(exchange)
  }

  onResponse(record: RequestRecord): void {
    const exchange = record.exchange
    if (exchange === undefined) return
    const context = this.#spans.get(exchange)
    if (context === undefined || !context.sampled) return
    this.#export(buildSpan(record, exchange, context, this.#routes.get(record.route ?? '')))
  }
}

function buildSpan(record: RequestRecord, exchange: Exchange, context: SpanContext, route: RouteTrace | undefined): FinishedSpan {
  const kind = route?.kind ?? SPAN_KIND.server
  const status = record.status
  const headers = exchange.request.headers
  const attributes: Array<[string, AttributeValue]> = [
    ['http.request.method', record.method],
    ['url.path', record.path],
    ['url.scheme', 'http'],
    ['http.response.status_code', status],
    ['pillion.route', exchange.route],
    ['pillion.request_id', record.requestId],
  ]
  if (route !== undefined) attributes.push(['http.route', route.pattern])
  const host = headers.get('host')
  if (host !== null) attributes.push(['server.address', host.replace(/:\d+$/, '')])
  if (record.clientAddress !== '') attributes.push(['client.address', record.clientAddress])
  const userAgent = headers.get('user-agent')
  if (userAgent !== null) attributes.push(['user_agent.original', userAgent])
  if (exchange.upstream !== undefined) attributes.push(['pillion.upstream', exchange.upstream])
  if (exchange.endpoint !== undefined) attributes.push(['pillion.endpoint', exchange.endpoint])
  if (exchange.attempts > 0) attributes.push(['pillion.attempts', exchange.attempts])
  if (exchange.upstreamMs !== undefined) attributes.push(['pillion.upstream_duration_ms', Math.round(exchange.upstreamMs * 1000) / 1000])
  if (exchange.fallback !== undefined) attributes.push(['pillion.fallback', exchange.fallback])
  if (exchange.fault !== undefined) attributes.push(['pillion.fault', exchange.fault])
  if (exchange.authz !== undefined) attributes.push(['pillion.authz', exchange.authz])
  attributes.push(['http.response.body.size', record.bytesOut])
  // Semantic conventions: a server span is an error from 5xx, a client span from 4xx.
  const failed = status >= (kind === SPAN_KIND.client ? 400 : 500)
  if (failed) attributes.push(['error.type', record.code ?? String(status)])
  return {
    traceId: context.traceId,
    spanId: context.spanId,
    parentSpanId: context.parentSpanId,
    name: route === undefined ? record.method : `${record.method} ${route.pattern}`,
    kind,
    startMs: record.startedAt,
    endMs: record.startedAt + record.durationMs,
    attributes,
    status: failed ? { code: STATUS_CODE.error, message: record.code ?? `HTTP ${status}` } : { code: STATUS_CODE.unset },
  }
}
