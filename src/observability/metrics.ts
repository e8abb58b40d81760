import type { EventBus } from '../core/events.ts'
import type { MemoryUsage } from '../core/host.ts'
import { PolicyStates, type PolicyStateMap } from '../core/policy-states.ts'
import type { Exchange } from '../proxy/exchange.ts'
import type { UpstreamRuntime, UpstreamSnapshot } from '../upstream/upstream.ts'
import type { RequestObserver, RequestRecord } from './observer.ts'
import { LATENCY_BUCKETS, Registry, observe, type CounterChild, type Family, type Format, type HistogramChild } from './registry.ts'

/** The route label of requests that matched no route; route names cannot start with "-". */
export const NO_ROUTE = '-'

/** Methods get their own label value; anything else is "OTHER", so a client cannot mint series. */
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'CONNECT', 'OTHER'] as const
const METHOD_INDEX = new Map<string, number>(METHODS.map((method, index) => [method, index]))
const OTHER_METHOD = METHODS.length - 1
const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const
const BREAKER_STATES = ['closed', 'open', 'half_open'] as const

/** The reloader's account of the config in force (GET /config/status), as far as metrics need it. */
export interface ReloadStatus {
  /** Hash of the policy text in force; '' until known. */
  version: string
  reloads?: { succeeded: number; failed: number }
  lastReload?: { ok: boolean }
}

/** Where scrape-time gauges read from: the maps of the config in force, which a reload replaces. */
export interface MetricSources {
  /** Snapshots the policies registered (circuit_breaker, bulkhead). */
  states: PolicyStates
  upstreams: ReadonlyMap<string, UpstreamRuntime>
  status?: () => ReloadStatus
}

const NO_SOURCES: MetricSources = { states: new PolicyStates(), upstreams: new Map() }

/**
 * One route's children, resolved once per route name and kept: the request path bumps numbers in
 * them and builds no label strings. Children are keyed by route name, so they outlive reloads
 * and a route that keeps its name keeps counting.
 */
class RouteSeries {
  readonly inFlight: CounterChild
  readonly bytes: CounterChild
  /** [method index] -> status code -> child of pillion_requests_total. */
  readonly #requests: Array<Map<number, CounterChild> | undefined> = []
  readonly #durations: Array<HistogramChild | undefined> = []
  readonly #upstreams = new Map<string, HistogramChild>()
  readonly #errors = new Map<string, CounterChild>()
  readonly #metrics: GatewayMetrics
  readonly #route: string
  /** Hoisted so onRequest hands it to exchange.onFinish without a closure per request. */
  readonly leave = (): void => {
    this.inFlight.value--
  }

  constructor(metrics: GatewayMetrics, route: string) {
    this.#metrics = metrics
    this.#route = route
    this.inFlight = metrics.inFlight.labels(route)
    this.bytes = metrics.responseBytes.labels(route)
  }

  requests(methodIndex: number, status: number): CounterChild {
    const byStatus = (this.#requests[methodIndex] ??= new Map())
    let child = byStatus.get(status)
    if (child === undefined) {
      child = this.#metrics.requests.labels(this.#route, METHODS[methodIndex]!, statusClass(status), String(status))
      byStatus.set(status, child)
    }
    return child
  }

  duration(status: number): HistogramChild {
    const index = statusIndex(status)
    return (this.#durations[index] ??= this.#metrics.requestDuration.labels(this.#route, STATUS_CLASSES[index]!))
  }

  upstream(name: string): HistogramChild {
    let child = this.#upstreams.get(name)
    if (child === undefined) {
      child = this.#metrics.upstreamDuration.labels(this.#route, name)
      this.#upstreams.set(name, child)
    }
    return child
  }

  error(code: string): CounterChild {
    let child = this.#errors.get(code)
    if (child === undefined) {
      child = this.#metrics.errors.labels(this.#route, code)
      this.#errors.set(code, child)
    }
    return child
  }
}

function statusIndex(status: number): number {
  const index = Math.floor(status / 100) - 1
  return index < 0 ? 0 : index > 4 ? 4 : index
}

function statusClass(status: number): string {
  return STATUS_CLASSES[statusIndex(status)]!
}

/** A label value from an event we do not type yet: a bounded string, or "-" when missing. */
function loose(value: unknown): string {
  if (typeof value !== 'string' || value === '') return typeof value === 'number' || typeof value === 'boolean' ? String(value) : NO_ROUTE
  return value.length > 64 ? value.slice(0, 64) : value
}

type LooseEvent = Record<string, unknown> | undefined
type LooseBus = { on(name: string, listener: (event: LooseEvent) => void): () => void }

export interface MetricsOptions {
  version: string
  runtime: string
  /** Read at each scrape for the process memory gauges; without it they are left out. */
  memory?: (() => MemoryUsage) | undefined
}

/**
 * Every Pillion metric. Made once per process, before the first config, so counters survive config
 * reloads: a reload builds new pipelines that report into this same object.
 */
export class GatewayMetrics implements RequestObserver {
  readonly registry = new Registry()
  readonly requests: Family
  readonly errors: Family
  readonly grpcCalls: Family
  readonly requestDuration: Family<HistogramChild>
  readonly upstreamDuration: Family<HistogramChild>
  readonly inFlight: Family
  readonly responseBytes: Family
  readonly retries: Family
  readonly retryBudgetExhausted: Family
  readonly breakerState: Family
  readonly breakerTransitions: Family
  readonly breakerRejections: Family
  readonly bulkheadRejections: Family
  readonly bulkheadActive: Family
  readonly bulkheadQueued: Family
  readonly bulkheadMaxConcurrent: Family
  readonly bulkheadMaxQueue: Family
  readonly fallbacks: Family
  readonly rateLimitDecisions: Family
  readonly faultsInjected: Family
  readonly mirrorDropped: Family
  readonly auditDropped: Family
  readonly authRejections: Family
  readonly authzRefusals: Family
  readonly extAuthzDecisions: Family
  readonly extAuthzCacheHits: Family
  readonly ipRejections: Family
  readonly tlsClientRefusals: Family
  readonly limitRejections: Family
  readonly jwksRefreshes: Family
  readonly redisErrors: Family
  readonly ejections: Family
  readonly healthChecks: Family
  readonly endpointHealthy: Family
  readonly endpointEjected: Family
  readonly endpointActive: Family
  readonly upstreamPanic: Family
  readonly discoveryUpdates: Family
  readonly configReloads: Family
  readonly configInfo: Family
  readonly configLastReloadSuccess: Family
  readonly spansExported: Family
  readonly spansDropped: Family
  readonly accessLogDropped: Family
  readonly websocketConnections: Family
  readonly websocketMessages: Family
  readonly websocketBytes: Family
  readonly #routes = new Map<string, RouteSeries>()
  readonly #watched = new WeakSet<EventBus>()
  #sources: () => MetricSources = () => NO_SOURCES

  constructor(options: MetricsOptions) {
    const r = this.registry
    r.info('pillion_build_info', 'The running Pillion version and runtime.', ['version', 'runtime']).labels(options.version, options.runtime)
    r.gauge('pillion_start_time_seconds', 'When this process started, seconds since the epoch.').labels().value = Math.round(Date.now() / 1000)
    if (options.memory !== undefined) memoryGauges(r, options.memory)
    this.requests = r.counter('pillion_requests_total', 'Requests by route, method, status class and status code.', ['route', 'method', 'status_class', 'code'])
    // By route, not by service and method: those come from the client's path, and would let any client mint series.
    this.grpcCalls = r.counter('pillion_grpc_calls_total', 'gRPC calls by route and the grpc-status they ended with (the upstream\'s, or the gateway\'s own).', ['route', 'grpc_status'])
    this.errors = r.counter('pillion_request_errors_total', 'Answers carrying a Pillion error code (x-pillion-error), by route and code.', ['route', 'error'])
    this.requestDuration = r.histogram('pillion_request_duration_seconds', 'Whole request, until the response body ended.', ['route', 'status_class'], LATENCY_BUCKETS)
    this.upstreamDuration = r.histogram('pillion_upstream_duration_seconds', "The last try's upstream call, until its response headers.", ['route', 'upstream'], LATENCY_BUCKETS)
    this.inFlight = r.gauge('pillion_requests_in_flight', 'Requests a route is handling now.', ['route'])
    this.responseBytes = r.counter('pillion_response_bytes_total', 'Response body bytes delivered to clients.', ['route'])
    this.retries = r.counter('pillion_retries_total', 'Retries sent (tries after the first).', ['route'])
    this.retryBudgetExhausted = r.counter('pillion_retry_budget_exhausted_total', 'Retries not made because the retry budget was spent.', ['route'])
    this.breakerState = r.gauge('pillion_breaker_state', 'Circuit breaker state: 1 for the current state, 0 for the others.', ['route', 'upstream', 'state'])
    this.breakerTransitions = r.counter('pillion_breaker_transitions_total', 'Circuit breaker state changes.', ['route', 'upstream', 'from', 'to'])
    this.breakerRejections = r.counter('pillion_breaker_rejections_total', 'Calls refused by an open or busy half-open breaker.', ['route', 'upstream'])
    this.bulkheadRejections = r.counter('pillion_bulkhead_rejections_total', 'Requests refused by a bulkhead: queue full or queue timeout.', ['route', 'reason'])
    this.bulkheadActive = r.gauge('pillion_bulkhead_active', 'Requests holding a bulkhead slot.', ['route'])
    this.bulkheadQueued = r.gauge('pillion_bulkhead_queued', 'Requests waiting in a bulkhead queue.', ['route'])
    this.bulkheadMaxConcurrent = r.gauge('pillion_bulkhead_max_concurrent', 'Bulkhead slots (max_concurrent).', ['route'])
    this.bulkheadMaxQueue = r.gauge('pillion_bulkhead_max_queue', 'Bulkhead queue length (max_queue).', ['route'])
    this.fallbacks = r.counter('pillion_fallbacks_total', 'Answers a fallback served.', ['route', 'kind'])
    this.rateLimitDecisions = r.counter('pillion_rate_limit_decisions_total', 'Rate limit decisions.', ['route', 'limit', 'decision'])
    this.faultsInjected = r.counter('pillion_faults_injected_total', 'Injected faults.', ['route', 'kind'])
    this.mirrorDropped = r.counter('pillion_mirror_dropped_total', 'Mirrored requests dropped.', ['route'])
    this.auditDropped = r.counter('pillion_audit_dropped_total', 'Audit records dropped.')
    this.authRejections = r.counter('pillion_auth_rejections_total', 'Requests refused by jwt or api_key, by reason.', ['route', 'policy', 'reason'])
    this.authzRefusals = r.counter('pillion_authz_refusals_total', 'Requests authz refused, or would have in dry run, by the rule that refused.', ['route', 'rule', 'mode'])
    this.extAuthzDecisions = r.counter('pillion_ext_authz_decisions_total', "The authorization service's decisions, and its errors by what on_error made of them.", ['route', 'result'])
    this.extAuthzCacheHits = r.counter('pillion_ext_authz_cache_hits_total', 'ext_authz decisions taken from the decision cache.', ['route'])
    this.ipRejections = r.counter('pillion_ip_rejections_total', 'Requests refused by the ip policy.', ['route', 'reason'])
    this.tlsClientRefusals = r.counter('pillion_tls_client_refusals_total', 'TLS clients dropped after the handshake: a verified certificate without any of allowed_sans.', ['listener', 'reason'])
    this.limitRejections = r.counter('pillion_limit_rejections_total', 'Requests refused by the limits policy (body, headers, url, method, client_timeout).', ['route', 'limit'])
    this.jwksRefreshes = r.counter('pillion_jwks_refreshes_total', 'JWKS fetches by result.', ['result'])
    this.redisErrors = r.counter('pillion_redis_errors_total', 'Failed or slow Redis calls of global rate limits.')
    this.ejections = r.counter('pillion_endpoint_ejections_total', 'Endpoints ejected by outlier detection.', ['upstream'])
    this.healthChecks = r.counter('pillion_health_checks_total', 'Active health check probes by result.', ['upstream', 'result'])
    // Before the endpoint gauges: its collect takes the upstream snapshots they share.
    this.upstreamPanic = r.gauge('pillion_upstream_panic', 'Whether an upstream is in panic mode (every endpoint out of service).', ['upstream'])
    this.endpointHealthy = r.gauge('pillion_endpoint_healthy', 'Whether an endpoint passes its health checks (1) or not (0).', ['upstream', 'endpoint'])
    this.endpointEjected = r.gauge('pillion_endpoint_ejected', 'Whether an endpoint is ejected now.', ['upstream', 'endpoint'])
    this.endpointActive = r.gauge('pillion_endpoint_active_requests', 'Requests in flight to an endpoint.', ['upstream', 'endpoint'])
    this.discoveryUpdates = r.counter('pillion_discovery_updates_total', 'Discovery results: updated or failed.', ['upstream', 'result'])
    this.configReloads = r.counter('pillion_config_reloads_total', 'Config reloads by result.', ['result'])
    this.configInfo = r.info('pillion_config_info', 'The config in force, by its hash.', ['hash'])
    this.configLastReloadSuccess = r.gauge('pillion_config_last_reload_success', 'Whether the last config reload succeeded (1) or not (0).')
    this.spansExported = r.counter('pillion_trace_spans_exported_total', 'Spans the OTLP collector accepted.')
    this.spansDropped = r.counter('pillion_trace_spans_dropped_total', 'Spans dropped: queue full or export failed.', ['reason'])
    this.accessLogDropped = r.counter('pillion_access_log_dropped_total', 'Access log lines dropped because the sink fell behind.')
    this.websocketConnections = r.gauge('pillion_websocket_connections', 'WebSockets a route carries now.', ['route'])
    // Added when a connection closes, with what passed through it: direction "in" is client to upstream, "out" the reverse.
    this.websocketMessages = r.counter('pillion_websocket_messages_total', 'WebSocket messages relayed, counted when their connection closes.', ['route', 'direction'])
    this.websocketBytes = r.counter('pillion_websocket_bytes_total', 'WebSocket message payload bytes relayed, counted when their connection closes.', ['route', 'direction'])
    // Series without labels exist from the start, so a query sees 0 rather than nothing.
    for (const family of [this.auditDropped, this.spansExported, this.accessLogDropped, this.redisErrors]) family.labels()
    this.#scrapeGauges()
  }

  /** Scrape-time gauges read the maps of the config in force through this (AdminState's, on reload too). */
  setSources(sources: () => MetricSources): void {
    this.#sources = sources
  }

  /** Counts policy events. Safe to call for every bus a config builds; each is subscribed once. */
  watch(events: EventBus): void {
    if (this.#watched.has(events)) return
    this.#watched.add(events)
    events.on('retry', (e) => this.retries.labels(e.route).value++)
    events.on('retry_budget_exhausted', (e) => this.retryBudgetExhausted.labels(e.route).value++)
    events.on('breaker_transition', (e) => this.breakerTransitions.labels(e.route, e.upstream, e.from, e.to).value++)
    events.on('breaker_reject', (e) => this.breakerRejections.labels(e.route, e.upstream).value++)
    events.on('bulkhead_reject', (e) => this.bulkheadRejections.labels(e.route, e.reason).value++)
    events.on('fallback_served', (e) => this.fallbacks.labels(e.route, e.kind).value++)
    events.on('endpoint_ejected', (e) => this.ejections.labels(e.upstream).value++)
    events.on('health_check', (e) => this.healthChecks.labels(e.upstream, e.ok ? 'pass' : 'fail').value++)
    events.on('discovery_updated', (e) => this.discoveryUpdates.labels(e.upstream, 'updated').value++)
    events.on('discovery_failed', (e) => this.discoveryUpdates.labels(e.upstream, 'failed').value++)
    events.on('websocket_closed', (e) => {
      this.websocketMessages.labels(e.route, 'in').value += e.messagesIn
      this.websocketMessages.labels(e.route, 'out').value += e.messagesOut
      this.websocketBytes.labels(e.route, 'in').value += e.bytesIn
      this.websocketBytes.labels(e.route, 'out').value += e.bytesOut
    })
    // Events of the newer policies: subscribed by name and read defensively, so a field renamed there
    // shows as "-" here instead of breaking the build or the request.
    const bus = events as unknown as LooseBus
    // Once per request and limit: each limit emits the same two frozen event objects, so the child is
    // found by object identity and no label key is built per request.
    const decisions = new WeakMap<object, CounterChild>()
    bus.on('rate_limit_decision', (e) => {
      if (e === undefined) return
      let child = decisions.get(e)
      if (child === undefined) {
        const decision = e.allowed === true ? 'allowed' : e.dryRun === true ? 'dry_run' : 'rejected'
        child = this.rateLimitDecisions.labels(loose(e.route), loose(e.limit), decision)
        if (Object.isFrozen(e)) decisions.set(e, child)
      }
      child.value++
    })
    bus.on('fault_injected', (e) => this.faultsInjected.labels(loose(e?.route), loose(e?.kind)).value++)
    bus.on('mirror_dropped', (e) => this.mirrorDropped.labels(loose(e?.route)).value++)
    bus.on('audit_dropped', (e) => (this.auditDropped.labels().value += typeof e?.records === 'number' ? e.records : 1))
    bus.on('auth_reject', (e) => this.authRejections.labels(loose(e?.route), loose(e?.policy), loose(e?.reason)).value++)
    // Each rule emits one frozen event object, and ext_authz four for its usual decisions: children by identity.
    const refusals = new WeakMap<object, CounterChild>()
    bus.on('authz_refused', (e) => {
      if (e === undefined) return
      let child = refusals.get(e)
      if (child === undefined) {
        child = this.authzRefusals.labels(loose(e.route), loose(e.rule), e.dryRun === true ? 'dry_run' : 'enforce')
        if (Object.isFrozen(e)) refusals.set(e, child)
      }
      child.value++
    })
    const authorizations = new WeakMap<object, [CounterChild, CounterChild | undefined]>()
    bus.on('ext_authz_decision', (e) => {
      if (e === undefined) return
      let children = authorizations.get(e)
      if (children === undefined) {
        children = [this.extAuthzDecisions.labels(loose(e.route), loose(e.result)), e.cached === true ? this.extAuthzCacheHits.labels(loose(e.route)) : undefined]
        if (Object.isFrozen(e)) authorizations.set(e, children)
      }
      children[0].value++
      if (children[1] !== undefined) children[1].value++
    })
    bus.on('ip_reject', (e) => this.ipRejections.labels(loose(e?.route), loose(e?.reason)).value++)
    bus.on('client_certificate_refused', (e) => this.tlsClientRefusals.labels(loose(e?.listener), 'allowed_sans').value++)
    bus.on('limit_reject', (e) => this.limitRejections.labels(loose(e?.route), loose(e?.limit)).value++)
    bus.on('jwks_refresh', (e) => this.jwksRefreshes.labels(e?.ok === true ? 'ok' : 'failed').value++)
    bus.on('redis_error', (e) => (this.redisErrors.labels().value += typeof e?.failures === 'number' ? e.failures : 1))
  }

  routeSeries(route: string): RouteSeries {
    let series = this.#routes.get(route)
    if (series === undefined) {
      series = new RouteSeries(this, route)
      this.#routes.set(route, series)
    }
    return series
  }

  onRequest(exchange: Exchange): void {
    const series = this.routeSeries(exchange.route)
    series.inFlight.value++
    // On finish rather than in onResponse: an exchange that ends in an unexpected error still ends.
    exchange.onFinish(series.leave)
  }

  onResponse(record: RequestRecord): void {
    const series = this.routeSeries(record.route ?? NO_ROUTE)
    const status = record.status
    series.requests(METHOD_INDEX.get(record.method) ?? OTHER_METHOD, status).value++
    observe(series.duration(status), LATENCY_BUCKETS, record.durationMs / 1000)
    if (record.bytesOut > 0) series.bytes.value += record.bytesOut
    if (record.code !== undefined) series.error(record.code).value++
    if (record.grpcStatus !== undefined) this.grpcCalls.labels(record.route ?? NO_ROUTE, String(record.grpcStatus)).value++
    const exchange = record.exchange
    if (exchange?.upstreamMs !== undefined && exchange.upstream !== undefined) {
      observe(series.upstream(exchange.upstream), LATENCY_BUCKETS, exchange.upstreamMs / 1000)
    }
  }

  render(format: Format = 'prometheus'): string {
    return this.registry.render(format)
  }

  sources(): MetricSources {
    return this.#sources()
  }

  #scrapeGauges(): void {
    // Reloads are counted by the reloader (GET /config/status); read at scrape, they cannot drift from it.
    this.configReloads.collect = (family) => {
      const reloads = this.#sources().status?.().reloads
      family.labels('success').value = reloads?.succeeded ?? 0
      family.labels('failure').value = reloads?.failed ?? 0
    }
    this.configInfo.collect = (family) => {
      const version = this.#sources().status?.().version
      family.reset()
      if (version) family.labels(version)
    }
    this.configLastReloadSuccess.collect = (family) => {
      family.labels().value = this.#sources().status?.().lastReload?.ok === false ? 0 : 1
    }
    this.breakerState.collect = (family) => {
      family.reset()
      for (const snapshot of this.#sources().states.of('circuit_breaker').values()) {
        const { route, upstream, state } = snapshot()
        for (const each of BREAKER_STATES) family.labels(route, upstream, each).value = each === state ? 1 : 0
      }
    }
    const bulkheads = (family: Family, pick: (snapshot: PolicyStateMap['bulkhead']) => number) => {
      family.reset()
      for (const snapshot of this.#sources().states.of('bulkhead').values()) {
        const shown = snapshot()
        family.labels(shown.route).value = pick(shown)
      }
    }
    this.websocketConnections.collect = (family) => {
      family.reset()
      for (const snapshot of this.#sources().states.of('websocket').values()) {
        const shown = snapshot()
        family.labels(shown.route).value = shown.open
      }
    }
    this.bulkheadActive.collect = (family) => bulkheads(family, (s) => s.active)
    this.bulkheadQueued.collect = (family) => bulkheads(family, (s) => s.queued)
    this.bulkheadMaxConcurrent.collect = (family) => bulkheads(family, (s) => s.maxConcurrent)
    this.bulkheadMaxQueue.collect = (family) => bulkheads(family, (s) => s.maxQueue)
    // One snapshot of every upstream per scrape, shared by the four families below.
    let upstreams: UpstreamSnapshot[] = []
    this.upstreamPanic.collect = (family) => {
      upstreams = [...this.#sources().upstreams.values()].map((upstream) => upstream.snapshot())
      family.reset()
      for (const upstream of upstreams) family.labels(upstream.name).value = upstream.panic ? 1 : 0
    }
    const endpoints = (family: Family, pick: (endpoint: UpstreamSnapshot['endpoints'][number]) => number) => {
      family.reset()
      for (const upstream of upstreams) for (const endpoint of upstream.endpoints) family.labels(upstream.name, endpoint.url).value = pick(endpoint)
    }
    this.endpointHealthy.collect = (family) => endpoints(family, (e) => (e.healthy ? 1 : 0))
    this.endpointEjected.collect = (family) => endpoints(family, (e) => (e.ejected ? 1 : 0))
    this.endpointActive.collect = (family) => endpoints(family, (e) => e.active)
  }
}

/**
 * RSS under the name every Prometheus client library and Linkerd's proxy use, so existing memory
 * panels and alerts find it; the engine's heap beside it tells a JavaScript leak from native growth.
 */
function memoryGauges(r: Registry, memory: () => MemoryUsage): void {
  let usage: MemoryUsage | undefined
  const resident = r.gauge('process_resident_memory_bytes', 'Resident memory size in bytes.')
  const heapUsed = r.gauge('pillion_heap_used_bytes', "The JavaScript engine's heap in use, in bytes.")
  const heapTotal = r.gauge('pillion_heap_total_bytes', "The JavaScript engine's heap size, in bytes (the runtime's memoryUsage().heapTotal).")
  // One reading per scrape, taken by the first of the three.
  resident.collect = (family) => {
    usage = memory()
    family.labels().value = usage.residentBytes
  }
  heapUsed.collect = (family) => void (family.labels().value = usage?.heapUsedBytes ?? 0)
  heapTotal.collect = (family) => void (family.labels().value = usage?.heapTotalBytes ?? 0)
}
