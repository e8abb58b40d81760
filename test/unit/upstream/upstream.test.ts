import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { maxEjected } from '../../../src/upstream/outlier.ts'
import { endpointFor, endpoints, picks, recordEvents, testUpstream } from '../fakes/upstream-fakes.ts'
import type { HealthCheckPolicy, OutlierPolicy } from '../../../src/upstream/config.ts'

const A = 'http://10.0.0.1:8080'
const B = 'http://10.0.0.2:8080'
const C = 'http://10.0.0.3:8080'
const D = 'http://10.0.0.4:8080'

const outlier = (policy: Partial<OutlierPolicy> = {}): OutlierPolicy => ({
  consecutiveFailures: 3,
  baseEjectionMs: 1000,
  maxEjectionMs: 300_000,
  maxEjectedPercent: 100,
  ...policy,
})

const healthCheck = (policy: Partial<HealthCheckPolicy> = {}): HealthCheckPolicy => ({
  path: '/healthz',
  intervalMs: 1000,
  timeoutMs: 100,
  unhealthyThreshold: 3,
  healthyThreshold: 2,
  ...policy,
})

function fail(upstream: ReturnType<typeof testUpstream>['upstream'], url: string, times: number): void {
  const endpoint = endpointFor(upstream, url)
  for (let i = 0; i < times; i++) upstream.report(endpoint, false)
}

function endpointState(upstream: ReturnType<typeof testUpstream>['upstream'], url: string) {
  return upstream.snapshot().endpoints.find((e) => e.url === url)!
}

describe('outlier ejection', () => {
  it('ejects an endpoint after consecutive_failures failed calls in a row, and it gets no traffic', () => {
    const { upstream, events } = testUpstream({ endpoints: endpoints(A, B, C), outlier: outlier() })
    const seen = recordEvents(events, 'endpoint_ejected')
    fail(upstream, A, 2)
    assert.equal(endpointState(upstream, A).ejected, false)
    assert.equal(endpointState(upstream, A).consecutiveFailures, 2)
    fail(upstream, A, 1)
    assert.equal(endpointState(upstream, A).ejected, true)
    assert.deepEqual(seen, [{ name: 'endpoint_ejected', event: { upstream: 'payments', endpoint: A, times: 1, durationMs: 1000 } }])
    assert.ok(!picks(upstream, 30).includes(A))
    assert.deepEqual(new Set(picks(upstream, 30)), new Set([B, C]))
  })

  it('a good call resets the count', () => {
    const { upstream } = testUpstream({ endpoints: endpoints(A, B), outlier: outlier() })
    const a = endpointFor(upstream, A)
    upstream.report(a, false)
    upstream.report(a, false)
    upstream.report(a, true)
    upstream.report(a, false)
    upstream.report(a, false)
    assert.equal(endpointState(upstream, A).ejected, false)
    upstream.report(a, false)
    assert.equal(endpointState(upstream, A).ejected, true)
  })

  it('reports nothing and ejects nothing without an outlier policy', () => {
    const { upstream } = testUpstream({ endpoints: endpoints(A, B) })
    fail(upstream, A, 100)
    assert.equal(endpointState(upstream, A).ejected, false)
    assert.ok(picks(upstream, 4).includes(A))
  })

  it('returns the endpoint when the ejection ends; the next ejection lasts base × times ejected, up to the cap', async () => {
    const { upstream, events, timers } = testUpstream({ endpoints: endpoints(A, B), outlier: outlier({ maxEjectionMs: 2500 }) })
    const seen = recordEvents(events, 'endpoint_ejected', 'endpoint_returned')
    fail(upstream, A, 3)
    await timers.advance(999)
    assert.ok(!picks(upstream, 10).includes(A), 'still ejected just before base_ejection')
    await timers.advance(1)
    assert.ok(picks(upstream, 10).includes(A), 'back after base_ejection')
    fail(upstream, A, 3)
    await timers.advance(1999)
    assert.ok(!picks(upstream, 10).includes(A), 'the second ejection lasts twice as long')
    await timers.advance(1)
    fail(upstream, A, 3)
    assert.deepEqual(
      seen.map(({ name, event }) => (name === 'endpoint_ejected' ? `ejected ${(event as { durationMs: number }).durationMs}` : 'returned')),
      ['ejected 1000', 'returned', 'ejected 2000', 'returned', 'ejected 2500'],
    )
    assert.equal(endpointState(upstream, A).timesEjected, 3)
  })

  it('forgives one past ejection per base_ejection spent back in service', async () => {
    const { upstream, events, timers } = testUpstream({ endpoints: endpoints(A, B), outlier: outlier() })
    const durations = recordEvents(events, 'endpoint_ejected')
    fail(upstream, A, 3)
    await timers.advance(1000)
    fail(upstream, A, 3) // right away: 2 × base
    await timers.advance(2000)
    picks(upstream, 1) // ends the ejection
    await timers.advance(1500) // one base in service: times 2 → 1
    fail(upstream, A, 3)
    assert.deepEqual(
      durations.map((d) => d.event.durationMs),
      [1000, 2000, 2000],
    )
  })

  it('honours max_ejected_percent, rounding down, but can always eject one', () => {
    assert.equal(maxEjected(4, 50), 2)
    assert.equal(maxEjected(3, 50), 1)
    assert.equal(maxEjected(3, 10), 1)
    assert.equal(maxEjected(20, 10), 2)
    const { upstream } = testUpstream({ endpoints: endpoints(A, B, C, D), outlier: outlier({ maxEjectedPercent: 50 }) })
    fail(upstream, A, 3)
    fail(upstream, B, 3)
    fail(upstream, C, 3)
    assert.deepEqual(
      upstream.snapshot().endpoints.map((e) => e.ejected),
      [true, true, false, false],
    )
    // Once one comes back, the next failure of C may take its place.
    const lone = testUpstream({ endpoints: endpoints(A, B, C), outlier: outlier({ maxEjectedPercent: 10 }) })
    fail(lone.upstream, A, 3)
    fail(lone.upstream, B, 3)
    assert.deepEqual(
      lone.upstream.snapshot().endpoints.map((e) => e.ejected),
      [true, false, false],
    )
  })

  it('the cap counts again once an ejected endpoint returns', async () => {
    const { upstream, timers } = testUpstream({ endpoints: endpoints(A, B, C), outlier: outlier({ maxEjectedPercent: 10 }) })
    fail(upstream, A, 3)
    fail(upstream, B, 3)
    assert.equal(endpointState(upstream, B).ejected, false)
    await timers.advance(1000)
    fail(upstream, B, 1)
    assert.equal(endpointState(upstream, A).ejected, false)
    assert.equal(endpointState(upstream, B).ejected, true)
  })

  it('failures of calls that were in flight when the endpoint was ejected do not extend the ejection', () => {
    const { upstream, events } = testUpstream({ endpoints: endpoints(A, B), outlier: outlier() })
    const seen = recordEvents(events, 'endpoint_ejected')
    fail(upstream, A, 10)
    assert.equal(seen.length, 1)
    assert.equal(endpointState(upstream, A).timesEjected, 1)
  })

  it('panic mode: with every endpoint ejected, traffic goes to all of them rather than nowhere', () => {
    const { upstream } = testUpstream({ endpoints: endpoints(A, B), outlier: outlier() })
    fail(upstream, A, 3)
    assert.equal(upstream.snapshot().panic, false)
    fail(upstream, B, 3)
    assert.equal(upstream.snapshot().panic, true)
    assert.deepEqual(new Set(picks(upstream, 10)), new Set([A, B]))
  })

  it('shows when an ejection ends', () => {
    const { upstream } = testUpstream({ endpoints: endpoints(A, B), outlier: outlier({ baseEjectionMs: 60_000 }) })
    fail(upstream, A, 3)
    const until = Date.parse(endpointState(upstream, A).ejectedUntil!)
    assert.ok(Math.abs(until - (Date.now() + 60_000)) < 5_000, `ejectedUntil ${endpointState(upstream, A).ejectedUntil}`)
    assert.equal(endpointState(upstream, B).ejectedUntil, undefined)
  })
})

describe('active health checks', () => {
  it('probes GET endpoint + path with a timeout signal, spread over the first interval', async () => {
    const { upstream, timers, client } = testUpstream(
      { endpoints: endpoints(A, `${B}/base`), healthCheck: healthCheck() },
      { random: () => 0.25 },
    )
    upstream.start()
    assert.deepEqual(timers.delays(), [250, 250])
    await timers.advance(250)
    assert.deepEqual(
      client.requests.map((r) => `${r.method} ${r.url}`),
      [`GET ${A}/healthz`, `GET ${B}/base/healthz`],
    )
    assert.equal(client.requests[0]!.connectTimeoutMs, 100)
    assert.equal(client.requests[0]!.signal.aborted, false)
    upstream.stop()
  })

  it('turns an endpoint unhealthy after unhealthy_threshold failed probes in a row, and healthy after healthy_threshold passes', async () => {
    const { upstream, timers, client, events } = testUpstream({ endpoints: endpoints(A, B), healthCheck: healthCheck() })
    const changes = recordEvents(events, 'health_check')
    upstream.start()
    client.set(`${A}/healthz`, 503)
    await timers.advance(2000) // probes at 500 and 1500
    assert.equal(endpointState(upstream, A).healthy, true, 'two failures are not enough')
    assert.ok(picks(upstream, 4).includes(A))
    await timers.advance(1000) // 2500
    assert.equal(endpointState(upstream, A).healthy, false)
    assert.ok(!picks(upstream, 20).includes(A), 'an unhealthy endpoint gets no traffic')
    client.set(`${A}/healthz`, 200)
    await timers.advance(1000)
    assert.equal(endpointState(upstream, A).healthy, false, 'one pass is not enough')
    await timers.advance(1000)
    assert.equal(endpointState(upstream, A).healthy, true)
    assert.ok(picks(upstream, 4).includes(A))
    const flips = changes.filter(({ event }) => event.changed && event.endpoint === A).map(({ event }) => event.healthy)
    assert.deepEqual(flips, [false, true])
    upstream.stop()
  })

  it('a pass between failures resets the streak', async () => {
    const { upstream, timers, client } = testUpstream({ endpoints: endpoints(A, B), healthCheck: healthCheck() })
    upstream.start()
    client.set(`${A}/healthz`, 500)
    await timers.advance(1500) // two failures
    client.set(`${A}/healthz`, 200)
    await timers.advance(1000)
    client.set(`${A}/healthz`, 500)
    await timers.advance(2000)
    assert.equal(endpointState(upstream, A).healthy, true)
    upstream.stop()
  })

  it('only a 2xx within the timeout passes: a slow probe fails, as do a refused connection, a redirect and a 404', async () => {
    const { upstream, timers, client } = testUpstream({ endpoints: endpoints(A, B, C, D, `${D}/v2`), healthCheck: healthCheck({ unhealthyThreshold: 1 }) })
    upstream.start()
    client.set(`${A}/healthz`, 'hang')
    client.set(`${B}/healthz`, 'refuse')
    client.set(`${C}/healthz`, 302)
    client.set(`${D}/healthz`, 404)
    client.set(`${D}/v2/healthz`, 204)
    await timers.advance(500 + 100)
    assert.deepEqual(
      upstream.snapshot().endpoints.map((e) => e.healthy),
      [false, false, false, false, true],
    )
    upstream.stop()
  })

  it('panic mode: with every endpoint unhealthy, traffic goes to all of them', async () => {
    const { upstream, timers, client } = testUpstream({ endpoints: endpoints(A, B), healthCheck: healthCheck({ unhealthyThreshold: 1 }) })
    upstream.start()
    client.set(`${A}/healthz`, 500)
    client.set(`${B}/healthz`, 500)
    await timers.advance(500)
    assert.equal(upstream.snapshot().panic, true)
    assert.deepEqual(new Set(picks(upstream, 10)), new Set([A, B]))
    upstream.stop()
  })

  it('stop() clears every timer and aborts probes in flight; nothing runs afterwards', async () => {
    const { upstream, timers, client } = testUpstream({ endpoints: endpoints(A, B), healthCheck: healthCheck() })
    upstream.start()
    client.set(`${A}/healthz`, 'hang')
    await timers.advance(500)
    assert.ok(timers.pending > 0)
    const hanging = client.requests.find((r) => r.url === `${A}/healthz`)!
    upstream.stop()
    assert.equal(timers.pending, 0)
    assert.equal(hanging.signal.aborted, true)
    const sent = client.requests.length
    await timers.advance(10_000)
    assert.equal(client.requests.length, sent)
  })

  it('starts no probes before start()', async () => {
    const { timers, client } = testUpstream({ endpoints: endpoints(A), healthCheck: healthCheck() })
    await timers.advance(10_000)
    assert.equal(client.requests.length, 0)
    assert.equal(timers.pending, 0)
  })

  it('a passing probe does not cut an outlier ejection short', async () => {
    const { upstream, timers } = testUpstream({
      endpoints: endpoints(A, B),
      healthCheck: healthCheck(),
      outlier: outlier({ baseEjectionMs: 30_000 }),
    })
    upstream.start()
    fail(upstream, A, 3)
    await timers.advance(5000)
    assert.equal(endpointState(upstream, A).ejected, true)
    upstream.stop()
  })
})

describe('picking for a retry', () => {
  it('takes an endpoint not tried yet even when every draw lands on the tried one', () => {
    const { upstream } = testUpstream({ balance: 'random', endpoints: endpoints(A, B) })
    const first = upstream.pick()!
    assert.equal(upstream.pick(), first, 'every draw lands on the same endpoint')
    const tried = [first]
    const second = upstream.pick(tried)
    assert.notEqual(second, first)
    assert.equal(upstream.pick([first, second!]), first, 'with every endpoint tried, any will do')
  })
})
