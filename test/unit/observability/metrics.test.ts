import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { EventBus } from '../../../src/core/events.ts'
import { GatewayMetrics, NO_ROUTE, type MetricSources } from '../../../src/observability/metrics.ts'
import type { RequestRecord } from '../../../src/observability/observer.ts'
import { LATENCY_BUCKETS, negotiate, quantile, Registry } from '../../../src/observability/registry.ts'
import { dashboardStats } from '../../../src/observability/stats.ts'
import type { BulkheadSnapshot } from '../../../src/policies/bulkhead/index.ts'
import type { BreakerSnapshot } from '../../../src/policies/circuit-breaker/types.ts'
import { PolicyStates } from '../../../src/core/policy-states.ts'
import { Exchange } from '../../../src/proxy/exchange.ts'
import type { UpstreamRuntime, UpstreamSnapshot } from '../../../src/upstream/upstream.ts'
import { samples } from '../../prometheus-text.ts'

function exchange(route = 'api', method = 'GET'): Exchange {
  const request = new Request('http://gw/api/x', { method })
  const made = new Exchange(request, { remoteAddress: '127.0.0.1' }, 'id-1', '/api/x', '', 0)
  made.route = route
  return made
}

function record(overrides: Partial<RequestRecord> = {}): RequestRecord {
  const ex = overrides.exchange === undefined && !('exchange' in overrides) ? exchange() : overrides.exchange
  return {
    requestId: 'id-1',
    route: 'api',
    method: 'GET',
    path: '/api/x',
    status: 200,
    code: undefined,
    startedAt: Date.now(),
    durationMs: 3,
    bytesOut: 10,
    clientAddress: '127.0.0.1',
    request: new Request('http://gw/api/x'),
    ...overrides,
    exchange: ex,
  }
}

const newMetrics = () => new GatewayMetrics({ version: '1.2.3', runtime: 'node' })

describe('registry', () => {
  test('renders counters, gauges and cumulative histogram buckets in the text format', () => {
    const registry = new Registry()
    registry.counter('x_total', 'Things.', ['kind']).labels('a').value = 3
    registry.gauge('y', 'Level.').labels().value = 1.5
    const histogram = registry.histogram('z_seconds', 'Time.', ['route'], [0.1, 1])
    const child = histogram.labels('r')
    child.counts[0]! += 1
    child.counts[1]! += 2
    child.counts[2]! += 1
    child.sum = 3.2
    child.count = 4
    assert.equal(
      registry.render(),
      [
        '# HELP x_total Things.',
        '# TYPE x_total counter',
        'x_total{kind="a"} 3',
        '# HELP y Level.',
        '# TYPE y gauge',
        'y 1.5',
        '# HELP z_seconds Time.',
        '# TYPE z_seconds histogram',
        'z_seconds_bucket{route="r",le="0.1"} 1',
        'z_seconds_bucket{route="r",le="1"} 3',
        'z_seconds_bucket{route="r",le="+Inf"} 4',
        'z_seconds_sum{route="r"} 3.2',
        'z_seconds_count{route="r"} 4',
        '',
      ].join('\n'),
    )
  })

  test('OpenMetrics: family names without _total and _info, units, # EOF', () => {
    const registry = new Registry()
    registry.counter('x_total', 'Things.').labels().value = 1
    registry.info('build_info', 'Build.', ['version']).labels('1.0')
    registry.histogram('d_seconds', 'Time.', [], [1]).labels()
    const text = registry.render('openmetrics')
    assert.match(text, /^# TYPE x counter$/m)
    assert.match(text, /^x_total 1$/m)
    assert.match(text, /^# TYPE build info$/m)
    assert.match(text, /^build_info\{version="1.0"\} 1$/m)
    assert.match(text, /^# UNIT d_seconds seconds$/m)
    assert.ok(text.endsWith('# EOF\n'))
    assert.match(registry.render(), /^# TYPE build_info gauge$/m)
  })

  test('escapes label values', () => {
    const registry = new Registry()
    registry.counter('x_total', 'X.', ['v']).labels('a"b\\c\nd').value = 1
    assert.match(registry.render(), /^x_total\{v="a\\"b\\\\c\\nd"\} 1$/m)
  })

  test('negotiates OpenMetrics only when asked', () => {
    assert.equal(negotiate('application/openmetrics-text; version=1.0.0,text/plain;q=0.5'), 'openmetrics')
    assert.equal(negotiate('text/plain'), 'prometheus')
    assert.equal(negotiate(undefined), 'prometheus')
  })

  test('quantiles interpolate within the bucket, as histogram_quantile does', () => {
    // 10 observations in (0.001, 0.0025]: the median is halfway through that bucket.
    const counts = new Array(LATENCY_BUCKETS.length + 1).fill(0)
    counts[1] = 10
    assert.equal(quantile(0.5, counts, LATENCY_BUCKETS), 0.00175)
    assert.equal(quantile(0.5, new Array(LATENCY_BUCKETS.length + 1).fill(0), LATENCY_BUCKETS), undefined)
  })

  test('a name can be registered once', () => {
    const registry = new Registry()
    registry.counter('x_total', 'X.')
    assert.throws(() => registry.counter('x_total', 'X.'), /registered twice/)
  })
})

describe('request metrics', () => {
  test('counts by route, method, status class and code; errors by code; both latencies', () => {
    const metrics = newMetrics()
    const ex = exchange()
    ex.upstream = 'local'
    ex.upstreamMs = 2
    metrics.onResponse(record({ exchange: ex, durationMs: 4 }))
    metrics.onResponse(record({ exchange: ex, durationMs: 40, status: 503, code: 'circuit_open' }))
    metrics.onResponse(record({ route: undefined, exchange: undefined, status: 404, code: 'no_route', bytesOut: 0 }))
    const s = samples(metrics.render())
    assert.equal(s.get('pillion_requests_total{route="api",method="GET",status_class="2xx",code="200"}'), 1)
    assert.equal(s.get('pillion_requests_total{route="api",method="GET",status_class="5xx",code="503"}'), 1)
    assert.equal(s.get(`pillion_requests_total{route="${NO_ROUTE}",method="GET",status_class="4xx",code="404"}`), 1)
    assert.equal(s.get('pillion_request_errors_total{route="api",error="circuit_open"}'), 1)
    assert.equal(s.get('pillion_request_errors_total{route="-",error="no_route"}'), 1)
    assert.equal(s.get('pillion_request_duration_seconds_bucket{route="api",status_class="2xx",le="0.005"}'), 1)
    assert.equal(s.get('pillion_request_duration_seconds_bucket{route="api",status_class="2xx",le="0.0025"}'), 0)
    assert.equal(s.get('pillion_request_duration_seconds_bucket{route="api",status_class="5xx",le="0.05"}'), 1)
    assert.equal(s.get('pillion_request_duration_seconds_sum{route="api",status_class="5xx"}'), 0.04)
    assert.equal(s.get('pillion_upstream_duration_seconds_count{route="api",upstream="local"}'), 2)
    assert.equal(s.get('pillion_upstream_duration_seconds_bucket{route="api",upstream="local",le="0.0025"}'), 2)
    assert.equal(s.get('pillion_response_bytes_total{route="api"}'), 20)
  })

  test('a method outside the standard ones is OTHER, so clients cannot mint series', () => {
    const metrics = newMetrics()
    metrics.onResponse(record({ method: 'BREW' }))
    metrics.onResponse(record({ method: 'PATCH' }))
    const s = samples(metrics.render())
    assert.equal(s.get('pillion_requests_total{route="api",method="OTHER",status_class="2xx",code="200"}'), 1)
    assert.equal(s.get('pillion_requests_total{route="api",method="PATCH",status_class="2xx",code="200"}'), 1)
    assert.ok(![...s.keys()].some((key) => key.includes('BREW')))
  })

  test('the request path reuses its children: no new series for a repeated label set', () => {
    const metrics = newMetrics()
    metrics.onResponse(record())
    const before = [...metrics.requests.series()].length
    for (let i = 0; i < 100; i++) metrics.onResponse(record())
    assert.equal([...metrics.requests.series()].length, before)
    assert.equal(samples(metrics.render()).get('pillion_requests_total{route="api",method="GET",status_class="2xx",code="200"}'), 101)
  })

  test('in flight rises on request and falls when the exchange finishes, however it ends', () => {
    const metrics = newMetrics()
    const a = exchange()
    const b = exchange()
    metrics.onRequest(a)
    metrics.onRequest(b)
    assert.equal(samples(metrics.render()).get('pillion_requests_in_flight{route="api"}'), 2)
    a.finish()
    assert.equal(samples(metrics.render()).get('pillion_requests_in_flight{route="api"}'), 1)
    b.finish()
    b.finish()
    assert.equal(samples(metrics.render()).get('pillion_requests_in_flight{route="api"}'), 0)
  })
})

describe('policy events', () => {
  test('each event the policies emit moves its counter', () => {
    const metrics = newMetrics()
    const events = new EventBus()
    metrics.watch(events)
    metrics.watch(events) // a second watch of the same bus must not double count
    events.emit('retry', { route: 'api', attempt: 2, reason: '503', delayMs: 10 })
    events.emit('retry_budget_exhausted', { route: 'api' })
    events.emit('breaker_transition', { route: 'api', upstream: 'local', from: 'closed', to: 'open' })
    events.emit('breaker_reject', { route: 'api', upstream: 'local' })
    events.emit('bulkhead_reject', { route: 'api', reason: 'full' })
    events.emit('fallback_served', { route: 'api', kind: 'static', cause: 'circuit_open' })
    events.emit('endpoint_ejected', { upstream: 'local', endpoint: 'http://a', times: 1, durationMs: 30_000 })
    events.emit('health_check', { upstream: 'local', endpoint: 'http://a', ok: false, healthy: true, changed: false })
    events.emit('discovery_failed', { upstream: 'local', error: 'nope' })
    const s = samples(metrics.render())
    assert.equal(s.get('pillion_retries_total{route="api"}'), 1)
    assert.equal(s.get('pillion_retry_budget_exhausted_total{route="api"}'), 1)
    assert.equal(s.get('pillion_breaker_transitions_total{route="api",upstream="local",from="closed",to="open"}'), 1)
    assert.equal(s.get('pillion_breaker_rejections_total{route="api",upstream="local"}'), 1)
    assert.equal(s.get('pillion_bulkhead_rejections_total{route="api",reason="full"}'), 1)
    assert.equal(s.get('pillion_fallbacks_total{route="api",kind="static"}'), 1)
    assert.equal(s.get('pillion_endpoint_ejections_total{upstream="local"}'), 1)
    assert.equal(s.get('pillion_health_checks_total{upstream="local",result="fail"}'), 1)
    assert.equal(s.get('pillion_discovery_updates_total{upstream="local",result="failed"}'), 1)
  })

  test('events other policies add are counted by name, with missing fields as "-"', () => {
    const metrics = newMetrics()
    const events = new EventBus()
    metrics.watch(events)
    const emit = (name: string, event: unknown) => (events as unknown as { emit(n: string, e: unknown): void }).emit(name, event)
    const admitted = Object.freeze({ route: 'api', limit: 'per-client', allowed: true, dryRun: false })
    const refused = Object.freeze({ route: 'api', limit: 'per-client', allowed: false, dryRun: false })
    emit('rate_limit_decision', admitted)
    emit('rate_limit_decision', admitted)
    emit('rate_limit_decision', refused)
    emit('rate_limit_decision', { route: 'api', limit: 'trial', allowed: false, dryRun: true })
    emit('fault_injected', { route: 'api', upstream: 'local', kind: 'abort', source: 'percent', status: 503 })
    emit('mirror_dropped', { route: 'api', upstream: 'shadow', reason: 'max_in_flight' })
    emit('audit_dropped', { reason: 'queue_full', records: 3 })
    emit('auth_reject', { route: 'api', policy: 'jwt', reason: 'expired' })
    emit('ip_reject', { route: 'api', address: '10.0.0.1', reason: 'denied' })
    emit('limit_reject', { route: 'api', limit: 'body' })
    emit('jwks_refresh', { url: 'http://idp', reason: 'initial', ok: false, keys: 0 })
    emit('redis_error', { error: 'timeout', failures: 4, onError: 'allow' })
    emit('auth_reject', {})
    const write = Object.freeze({ route: 'api', rule: 'write', dryRun: false })
    emit('authz_refused', write)
    emit('authz_refused', write)
    emit('authz_refused', { route: 'api', rule: 'route', dryRun: true })
    const cachedAllow = Object.freeze({ route: 'api', result: 'allowed' as const, cached: true })
    emit('ext_authz_decision', cachedAllow)
    emit('ext_authz_decision', cachedAllow)
    emit('ext_authz_decision', { route: 'api', result: 'error_denied', cached: false, error: 'timeout', url: 'http://authz' })
    const s = samples(metrics.render())
    assert.equal(s.get('pillion_authz_refusals_total{route="api",rule="write",mode="enforce"}'), 2)
    assert.equal(s.get('pillion_authz_refusals_total{route="api",rule="route",mode="dry_run"}'), 1)
    assert.equal(s.get('pillion_ext_authz_decisions_total{route="api",result="allowed"}'), 2)
    assert.equal(s.get('pillion_ext_authz_decisions_total{route="api",result="error_denied"}'), 1)
    assert.equal(s.get('pillion_ext_authz_cache_hits_total{route="api"}'), 2)
    assert.equal(s.get('pillion_rate_limit_decisions_total{route="api",limit="per-client",decision="allowed"}'), 2)
    assert.equal(s.get('pillion_rate_limit_decisions_total{route="api",limit="per-client",decision="rejected"}'), 1)
    assert.equal(s.get('pillion_rate_limit_decisions_total{route="api",limit="trial",decision="dry_run"}'), 1)
    assert.equal(s.get('pillion_faults_injected_total{route="api",kind="abort"}'), 1)
    assert.equal(s.get('pillion_mirror_dropped_total{route="api"}'), 1)
    assert.equal(s.get('pillion_audit_dropped_total'), 3)
    assert.equal(s.get('pillion_auth_rejections_total{route="api",policy="jwt",reason="expired"}'), 1)
    assert.equal(s.get('pillion_auth_rejections_total{route="-",policy="-",reason="-"}'), 1)
    assert.equal(s.get('pillion_ip_rejections_total{route="api",reason="denied"}'), 1)
    assert.ok(![...s.keys()].some((key) => key.includes('10.0.0.1')), 'never the client address as a label')
    assert.equal(s.get('pillion_limit_rejections_total{route="api",limit="body"}'), 1)
    assert.equal(s.get('pillion_jwks_refreshes_total{result="failed"}'), 1)
    assert.equal(s.get('pillion_redis_errors_total'), 4)
  })
})

function statesOf(breaker: [string, BreakerSnapshot], bulkhead: [string, BulkheadSnapshot]): PolicyStates {
  const states = new PolicyStates()
  states.register('circuit_breaker', breaker[0], () => breaker[1])
  states.register('bulkhead', bulkhead[0], () => bulkhead[1])
  return states
}

function sources(overrides: Partial<MetricSources> = {}): MetricSources {
  const breaker: BreakerSnapshot = { route: 'api', upstream: 'local', state: 'half_open', calls: 4, failures: 3, slowCalls: 0, retryInMs: 0 }
  const bulkhead: BulkheadSnapshot = { route: 'api', active: 2, queued: 1, maxConcurrent: 4, maxQueue: 8 }
  const upstream: UpstreamSnapshot = {
    name: 'local',
    balance: 'round_robin',
    panic: false,
    endpoints: [
      { url: 'http://a', weight: 1, active: 3, healthy: true, ejected: false, consecutiveFailures: 0, timesEjected: 0 },
      { url: 'http://b', weight: 1, active: 0, healthy: false, ejected: true, consecutiveFailures: 5, timesEjected: 1 },
    ],
  }
  return {
    states: statesOf(['api/local', breaker], ['api', bulkhead]),
    upstreams: new Map([['local', { snapshot: () => upstream } as UpstreamRuntime]]),
    ...overrides,
  }
}

describe('scrape-time gauges', () => {
  test('breaker state, bulkhead occupancy and endpoint health come from the config in force', () => {
    const metrics = newMetrics()
    let current = sources()
    metrics.setSources(() => current)
    let s = samples(metrics.render())
    assert.equal(s.get('pillion_breaker_state{route="api",upstream="local",state="half_open"}'), 1)
    assert.equal(s.get('pillion_breaker_state{route="api",upstream="local",state="open"}'), 0)
    assert.equal(s.get('pillion_bulkhead_active{route="api"}'), 2)
    assert.equal(s.get('pillion_bulkhead_queued{route="api"}'), 1)
    assert.equal(s.get('pillion_bulkhead_max_concurrent{route="api"}'), 4)
    assert.equal(s.get('pillion_endpoint_healthy{upstream="local",endpoint="http://b"}'), 0)
    assert.equal(s.get('pillion_endpoint_ejected{upstream="local",endpoint="http://b"}'), 1)
    assert.equal(s.get('pillion_endpoint_active_requests{upstream="local",endpoint="http://a"}'), 3)
    // A reload that drops the bulkhead and the breaker drops their series too.
    current = sources({ states: new PolicyStates() })
    s = samples(metrics.render())
    assert.equal(s.get('pillion_bulkhead_active{route="api"}'), undefined)
    assert.equal(s.get('pillion_breaker_state{route="api",upstream="local",state="half_open"}'), undefined)
  })

  test('config reloads and the config hash are read from the reloader status', () => {
    const metrics = newMetrics()
    let status = { version: 'aaaa', reloads: { succeeded: 0, failed: 0 }, lastReload: undefined as { ok: boolean } | undefined }
    metrics.setSources(() => sources({ status: () => status }))
    let s = samples(metrics.render())
    assert.equal(s.get('pillion_config_info{hash="aaaa"}'), 1)
    assert.equal(s.get('pillion_config_reloads_total{result="success"}'), 0)
    assert.equal(s.get('pillion_config_last_reload_success'), 1)
    status = { version: 'bbbb', reloads: { succeeded: 1, failed: 2 }, lastReload: { ok: false } }
    s = samples(metrics.render())
    assert.equal(s.get('pillion_config_info{hash="aaaa"}'), undefined)
    assert.equal(s.get('pillion_config_info{hash="bbbb"}'), 1)
    assert.equal(s.get('pillion_config_reloads_total{result="success"}'), 1)
    assert.equal(s.get('pillion_config_reloads_total{result="failure"}'), 2)
    assert.equal(s.get('pillion_config_last_reload_success'), 0)
  })

  test('process memory is read once per scrape, and is absent when the runtime gives none', () => {
    const readings = [
      { residentBytes: 50e6, heapUsedBytes: 10e6, heapTotalBytes: 16e6 },
      { residentBytes: 60e6, heapUsedBytes: 12e6, heapTotalBytes: 20e6 },
    ]
    let reads = 0
    const metrics = new GatewayMetrics({ version: '1.2.3', runtime: 'node', memory: () => readings[reads++]! })
    let s = samples(metrics.render())
    assert.deepEqual([s.get('process_resident_memory_bytes'), s.get('pillion_heap_used_bytes'), s.get('pillion_heap_total_bytes')], [50e6, 10e6, 16e6])
    s = samples(metrics.render())
    assert.deepEqual([s.get('process_resident_memory_bytes'), s.get('pillion_heap_used_bytes'), s.get('pillion_heap_total_bytes')], [60e6, 12e6, 20e6])
    assert.equal(reads, 2)
    assert.equal(samples(newMetrics().render()).has('process_resident_memory_bytes'), false)
  })

  test('build info names the version and runtime', () => {
    assert.equal(samples(newMetrics().render()).get('pillion_build_info{version="1.2.3",runtime="node"}'), 1)
  })
})

describe('dashboard stats', () => {
  test('carry the same totals as /metrics, per route, with the latency buckets', () => {
    const metrics = newMetrics()
    metrics.setSources(() => sources())
    const events = new EventBus()
    metrics.watch(events)
    for (let i = 0; i < 3; i++) metrics.onResponse(record({ durationMs: 2 }))
    metrics.onResponse(record({ status: 502, code: 'upstream_unavailable', durationMs: 20 }))
    events.emit('bulkhead_reject', { route: 'api', reason: 'queue_timeout' })
    ;(events as unknown as { emit(n: string, e: unknown): void }).emit('rate_limit_decision', { route: 'api', limit: 'l', allowed: false, dryRun: false })
    const stats = dashboardStats(metrics)
    const api = stats.routes.find((route) => route.route === 'api')!
    assert.equal(api.requests, 4)
    assert.deepEqual(api.byClass, { '2xx': 3, '5xx': 1 })
    assert.equal(api.latency.reduce((a, b) => a + b, 0), 4)
    assert.ok(api.p50! > 0.001 && api.p50! <= 0.0025)
    assert.deepEqual(stats.errors, [{ route: 'api', error: 'upstream_unavailable', count: 1 }])
    assert.equal(stats.bulkheads[0]!.rejections, 1)
    assert.equal(stats.breakers[0]!.state, 'half_open')
    assert.deepEqual(stats.rateLimits, [{ route: 'api', limit: 'l', decision: 'rejected', count: 1 }])
    assert.equal(stats.upstreams[0]!.endpoints.length, 2)
  })
})
