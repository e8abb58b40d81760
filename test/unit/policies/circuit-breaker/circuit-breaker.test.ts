import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import * as v from 'valibot'
import { loadConfigText } from '../../../../src/config/load.ts'
import { GatewayError } from '../../../../src/core/errors.ts'
import { EventBus } from '../../../../src/core/events.ts'
import { CountWindow, TimeWindow } from '../../../../src/policies/circuit-breaker/window.ts'
import { circuitBreakerLayer, circuitBreakerPolicy } from '../../../../src/policies/circuit-breaker/index.ts'
import type { RouteContext } from '../../../../src/policies/policy.ts'
import { fakeGateway } from '../../fakes/security-fakes.ts'
import { Exchange } from '../../../../src/proxy/exchange.ts'
import type { UpstreamRuntime } from '../../../../src/upstream/upstream.ts'
import { ONE_ROUTE, problemLines } from '../../fakes/policy-text.ts'
import type { CircuitBreakerPolicy } from '../../../../src/policies/circuit-breaker/types.ts'

/** The policy as the schema makes it from a TOML table, defaults included. */
function policyOf(table: Record<string, unknown>): CircuitBreakerPolicy {
  return v.parse(circuitBreakerPolicy.schema, table)
}

type Behaviour = () => Promise<Response> | Response

/** A breaker layer over a fake upstream step, with a clock the test moves by hand. */
function harness(table: Record<string, unknown>) {
  const clock = { now: 1_000 }
  const events = new EventBus()
  const transitions: string[] = []
  let rejects = 0
  events.on('breaker_transition', (event) => transitions.push(`${event.from}->${event.to}`))
  events.on('breaker_reject', () => rejects++)
  const gateway = fakeGateway()
  const context = {
    route: { name: 'api', timeoutMs: 0 },
    upstream: { config: { name: 'orders' } } as UpstreamRuntime,
    upstreams: new Map(),
    events,
    gateway,
    forwardTo: () => assert.fail('the breaker never forwards itself'),
    keep: (_kind, _policy, create) => create(),
    now: () => clock.now,
    random: Math.random,
  } satisfies RouteContext
  let upstreamCalls = 0
  let behaviour: Behaviour = () => new Response('ok')
  const step = circuitBreakerLayer(policyOf(table), context)(async () => {
    upstreamCalls++
    return behaviour()
  })
  const call = () => step(new Exchange(new Request('http://gateway/x'), { remoteAddress: '127.0.0.1' }, 'req-1', '/x', '', clock.now))
  return {
    clock,
    transitions,
    get rejects() {
      return rejects
    },
    get upstreamCalls() {
      return upstreamCalls
    },
    snapshot: () => gateway.states.of('circuit_breaker').get('api/orders')!(),
    call,
    respond(status: number) {
      behaviour = () => new Response(null, { status })
      return call()
    },
    fail(error: GatewayError) {
      behaviour = () => Promise.reject(error)
      return call().catch((thrown) => thrown as GatewayError)
    },
    /** A call whose answer the test gives later. */
    hold() {
      let answer!: (response: Response | GatewayError) => void
      const answered = new Promise<Response | GatewayError>((resolve) => (answer = resolve))
      behaviour = async () => {
        const value = await answered
        if (value instanceof GatewayError) throw value
        return value
      }
      const outcome = call().catch((thrown) => thrown as GatewayError)
      return { outcome, answer }
    },
  }
}

const connectFailure = () => new GatewayError('upstream_unavailable', 'refused', { failure: 'connect-failure' })

async function rejected(h: ReturnType<typeof harness>): Promise<GatewayError> {
  const before = h.upstreamCalls
  const error = await h.respond(200).then(
    () => assert.fail('expected circuit_open'),
    (thrown) => thrown as GatewayError,
  )
  assert.ok(error instanceof GatewayError)
  assert.equal(error.code, 'circuit_open')
  assert.equal(error.status, 503)
  assert.equal(h.upstreamCalls, before, 'a rejected call never reaches the upstream')
  return error
}

describe('circuit breaker: closed to open', () => {
  it('makes no decision below min_requests, then opens at the failure rate', async () => {
    const h = harness({ min_requests: 4, failure_rate: 0.5 })
    for (let i = 0; i < 3; i++) assert.equal((await h.respond(503)).status, 503)
    assert.equal(h.snapshot().state, 'closed', '3 failures of 3 calls, but min_requests is 4')
    await h.respond(200)
    assert.equal(h.snapshot().state, 'open')
    assert.deepEqual(h.transitions, ['closed->open'])
    await rejected(h)
    assert.equal(h.rejects, 1)
  })

  it('stays closed below the rate and opens exactly at it', async () => {
    const h = harness({ min_requests: 4, failure_rate: 0.5 })
    await h.respond(500)
    for (let i = 0; i < 3; i++) await h.respond(200)
    await h.respond(502) // 2 of 5
    assert.equal(h.snapshot().state, 'closed')
    assert.deepEqual([h.snapshot().calls, h.snapshot().failures], [5, 2])
    await h.respond(504) // 3 of 6 = 0.5
    assert.equal(h.snapshot().state, 'open')
  })

  it('counts connect failures and timeouts by default, and ignores clients that leave', async () => {
    const h = harness({ min_requests: 2, failure_rate: 1 })
    await h.fail(new GatewayError('client_closed', 'gone'))
    await h.fail(new GatewayError('client_closed', 'gone'))
    assert.deepEqual([h.snapshot().state, h.snapshot().calls], ['closed', 0])
    await h.fail(connectFailure())
    await h.fail(new GatewayError('upstream_timeout', 'slow'))
    assert.equal(h.snapshot().state, 'open')
  })

  it('counts only the configured failures; other errors count as successes (as in resilience4j)', async () => {
    const h = harness({ min_requests: 2, failure_rate: 0.5, failures: ['timeout', 429] })
    await h.fail(connectFailure())
    await h.respond(503)
    assert.deepEqual([h.snapshot().state, h.snapshot().calls, h.snapshot().failures], ['closed', 2, 0])
    await h.respond(429)
    await h.respond(429)
    assert.equal(h.snapshot().state, 'open')
  })

  it('opens on the slow-call rate: slow is the time until the response headers', async () => {
    const h = harness({ min_requests: 3, failure_rate: 1, slow_call: { duration: '1s', rate: 0.6 } })
    const answerAfter = async (ms: number) => {
      const held = h.hold()
      h.clock.now += ms
      held.answer(new Response('ok'))
      await held.outcome
    }
    for (const ms of [0, 999, 1000]) await answerAfter(ms)
    assert.deepEqual([h.snapshot().state, h.snapshot().slowCalls], ['closed', 1], '999ms is not slow, 1000ms is: 1 of 3')
    await answerAfter(5000)
    assert.deepEqual([h.snapshot().state, h.snapshot().slowCalls], ['closed', 2], '2 of 4 is under 0.6')
    await answerAfter(1500)
    assert.equal(h.snapshot().state, 'open', '3 of 5 reaches 0.6')
  })
})

describe('circuit breaker: windows', () => {
  it('a count window forgets the oldest call', async () => {
    const h = harness({ window_requests: 4, min_requests: 4, failure_rate: 0.5 })
    await h.respond(500)
    for (let i = 0; i < 4; i++) await h.respond(200) // the failure falls out
    assert.deepEqual([h.snapshot().calls, h.snapshot().failures], [4, 0])
    await h.respond(500)
    assert.equal(h.snapshot().state, 'closed')
    await h.respond(500) // 2 of the last 4; all-time it would be 3 of 7
    assert.equal(h.snapshot().state, 'open')
  })

  it('a time window forgets calls older than the window', async () => {
    const h = harness({ window: '10s', min_requests: 2, failure_rate: 1 })
    await h.respond(500)
    h.clock.now += 11_000
    await h.respond(500)
    assert.deepEqual([h.snapshot().state, h.snapshot().calls], ['closed', 1])
    h.clock.now += 5_000
    await h.respond(500)
    assert.equal(h.snapshot().state, 'open')
  })

  it('TimeWindow keeps ten buckets of totals, not a call log', () => {
    const window = new TimeWindow(1000)
    for (let i = 0; i < 10_000; i++) window.record(i / 10, i % 2 === 0, i % 4 === 0)
    window.advance(999)
    assert.deepEqual([window.calls, window.failures, window.slowCalls], [10_000, 5000, 2500])
    window.advance(1050) // the first bucket (0-99ms) ages out
    assert.deepEqual([window.calls, window.failures, window.slowCalls], [9000, 4500, 2250])
    window.advance(50_000)
    assert.deepEqual([window.calls, window.failures, window.slowCalls], [0, 0, 0])
  })

  it('CountWindow clear() empties it', () => {
    const window = new CountWindow(3)
    window.record(0, true, true)
    window.clear()
    window.record(0, false, false)
    assert.deepEqual([window.calls, window.failures, window.slowCalls], [1, 0, 0])
  })
})

describe('circuit breaker: open, half-open, closed', () => {
  async function opened(table: Record<string, unknown> = {}) {
    const h = harness({ min_requests: 1, failure_rate: 1, open_for: '30s', half_open_requests: 2, ...table })
    await h.respond(500)
    assert.equal(h.snapshot().state, 'open')
    return h
  }

  it('answers Retry-After with the open time left, in whole seconds rounded up', async () => {
    const h = await opened()
    assert.equal((await rejected(h)).headers?.['retry-after'], '30')
    h.clock.now += 10_800
    assert.equal((await rejected(h)).headers?.['retry-after'], '20')
    assert.equal(h.snapshot().retryInMs, 19_200)
    h.clock.now += 19_199
    assert.equal((await rejected(h)).headers?.['retry-after'], '1')
  })

  it('turns half-open once open_for has passed', async () => {
    const h = await opened()
    h.clock.now += 29_999
    await rejected(h)
    h.clock.now += 1
    assert.equal(h.snapshot().state, 'half_open')
    assert.equal(h.snapshot().retryInMs, 0)
    assert.equal((await h.respond(200)).status, 200)
    assert.deepEqual(h.transitions, ['closed->open', 'open->half_open'])
  })

  it('lets exactly half_open_requests probes through at once, and closes when all succeed', async () => {
    const h = await opened({ half_open_requests: 2, window_requests: 10 }) // a count window: nothing ages out by itself
    assert.deepEqual([h.snapshot().calls, h.snapshot().failures], [1, 1])
    h.clock.now += 30_000
    const first = h.hold()
    const second = h.hold()
    const third = await rejected(h)
    assert.equal(third.headers?.['retry-after'], '1')
    assert.equal(h.upstreamCalls, 3, 'the first failure and two probes')
    first.answer(new Response('ok'))
    await first.outcome
    assert.equal(h.snapshot().state, 'half_open', 'one probe of two is not enough')
    await rejected(h) // the slot of a finished probe is not handed out again
    second.answer(new Response('ok'))
    await second.outcome
    assert.equal(h.snapshot().state, 'closed')
    assert.deepEqual([h.snapshot().calls, h.snapshot().failures], [0, 0], 'closed again with an empty window')
    assert.deepEqual(h.transitions, ['closed->open', 'open->half_open', 'half_open->closed'])
  })

  it('reopens for a fresh open_for when a probe fails', async () => {
    const h = await opened({ half_open_requests: 3 })
    h.clock.now += 30_000
    await h.respond(200)
    await h.respond(503)
    assert.equal(h.snapshot().state, 'open')
    assert.equal((await rejected(h)).headers?.['retry-after'], '30')
    assert.deepEqual(h.transitions, ['closed->open', 'open->half_open', 'half_open->open'])
  })

  it('treats a slow probe as a failed one when slow_call is set', async () => {
    const h = await opened({ half_open_requests: 1, slow_call: { duration: '1s' } })
    h.clock.now += 30_000
    const probe = h.hold()
    h.clock.now += 2000
    probe.answer(new Response('ok'))
    await probe.outcome
    assert.equal(h.snapshot().state, 'open')
  })

  it('frees the slot of a probe whose client went away', async () => {
    const h = await opened({ half_open_requests: 1 })
    h.clock.now += 30_000
    const probe = h.hold()
    await rejected(h)
    probe.answer(new GatewayError('client_closed', 'gone'))
    await probe.outcome
    assert.equal(h.snapshot().state, 'half_open')
    assert.equal((await h.respond(200)).status, 200, 'another request takes the freed slot')
    assert.equal(h.snapshot().state, 'closed')
  })

  it('drops outcomes of calls admitted before the state changed', async () => {
    const h = await opened({ half_open_requests: 1 })
    h.clock.now += 30_000
    const late = h.hold() // the probe, held
    late.answer(new Response('ok'))
    await late.outcome
    assert.equal(h.snapshot().state, 'closed')
    const old = h.hold() // admitted while closed...
    await h.respond(500) // ...the breaker opens meanwhile (min_requests 1)
    assert.equal(h.snapshot().state, 'open')
    h.clock.now += 30_000
    await h.respond(200) // half-open, one probe, closed again
    old.answer(new Response(null, { status: 500 }))
    await old.outcome
    assert.deepEqual([h.snapshot().state, h.snapshot().calls], ['closed', 0], 'the old call was not counted against the new closed period')
  })

  it('registers its snapshot under route/upstream', async () => {
    const h = await opened()
    assert.deepEqual(h.snapshot(), { route: 'api', upstream: 'orders', state: 'open', calls: 1, failures: 1, slowCalls: 0, retryInMs: 30_000 })
  })
})



describe('circuit_breaker schema', () => {
  it('applies the defaults', () => {
    const config = loadConfigText(`${ONE_ROUTE}[routes.circuit_breaker]\n`, 'pillion.toml')
    assert.deepEqual(config.routes[0]!.policies.circuitBreaker, {
      windowMs: 10_000,
      minRequests: 20,
      failureRate: 0.5,
      openForMs: 30_000,
      halfOpenRequests: 3,
      failures: ['5xx', 'timeout', 'connect-failure'],
    })
  })

  it('normalizes every key; a count window caps the default min_requests', () => {
    const policy = policyOf({
      window_requests: 10,
      failure_rate: 0.25,
      slow_call: { duration: '1s', rate: 0.8 },
      open_for: '200ms',
      half_open_requests: 1,
      failures: ['gateway-error', 429],
    })
    assert.deepEqual(policy, {
      windowRequests: 10,
      minRequests: 10,
      failureRate: 0.25,
      slowCall: { durationMs: 1000, rate: 0.8 },
      openForMs: 200,
      halfOpenRequests: 1,
      failures: ['gateway-error', '429'],
    })
    assert.deepEqual(policyOf({ slow_call: { duration: '2s' } }).slowCall, { durationMs: 2000, rate: 1 })
  })

  it('reports every bad key with its path', () => {
    const found = problemLines(`${ONE_ROUTE}[routes.circuit_breaker]
window = "0s"
min_requests = 0
failure_rate = 1.5
slow_call = { duration = 5, rate = 0 }
open_for = "soon"
half_open_requests = 2.5
failures = ["6xx"]
retries = 3
`)
    assert.deepEqual(found, [
      'routes[0].circuit_breaker.window: expected a duration above zero, like "200ms" or "10s", got "0s"',
      'routes[0].circuit_breaker.min_requests: expected a whole number of at least 1, got 0',
      'routes[0].circuit_breaker.failure_rate: expected a number from 0 to 1, like 0.5, got 1.5',
      'routes[0].circuit_breaker.slow_call.duration: expected a duration like "250ms", "2s" or "1m", got 5 (a plain number has no unit: write "5s" or "5ms")',
      'routes[0].circuit_breaker.slow_call.rate: expected a number above 0 and at most 1, like 0.5, got 0',
      'routes[0].circuit_breaker.open_for: expected a duration like "250ms", "2s" or "1m", got "soon"',
      'routes[0].circuit_breaker.half_open_requests: expected a whole number of at least 1, got 2.5',
      'routes[0].circuit_breaker.failures[0]: expected one of "5xx", "gateway-error", "retriable-4xx", "connect-failure", "reset", "timeout", "cancelled", "deadline-exceeded", "resource-exhausted", "internal", "unavailable" or a status code like "429", got "6xx"',
      'routes[0].circuit_breaker.retries: unknown key "retries" (allowed: window, window_requests, min_requests, failure_rate, slow_call, open_for, half_open_requests, failures)',
    ])
  })

  it('refuses both windows, and a min_requests the count window can never reach', () => {
    assert.deepEqual(problemLines(`${ONE_ROUTE}[routes.circuit_breaker]\nwindow = "5s"\nwindow_requests = 50\n`), [
      'routes[0].circuit_breaker.window_requests: set either window (a time window) or window_requests (a count window), not both',
    ])
    assert.deepEqual(problemLines(`${ONE_ROUTE}[routes.circuit_breaker]\nwindow_requests = 5\nmin_requests = 9\n`), [
      'routes[0].circuit_breaker.min_requests: expected at most window_requests (5), got 9: the window never holds more calls',
    ])
  })

  it('works in [defaults]; a route table replaces the default whole', () => {
    const text = ONE_ROUTE.replace('[[routes]]', '[defaults.circuit_breaker]\nfailure_rate = 0.9\n\n[[routes]]') +
      '\n[[routes]]\nlistener = "ingress"\npath = "/own"\nupstream = "local"\ncircuit_breaker = { window_requests = 5 }\n'
    const config = loadConfigText(text, 'pillion.toml')
    assert.equal(config.routes[0]!.policies.circuitBreaker?.failureRate, 0.9)
    assert.equal(config.routes[1]!.policies.circuitBreaker?.failureRate, 0.5)
    assert.equal(config.routes[1]!.policies.circuitBreaker?.windowRequests, 5)
    assert.deepEqual(problemLines(ONE_ROUTE.replace('[[routes]]', '[defaults]\ncircuit_breaker = { window = "1x" }\n\n[[routes]]')), [
      'defaults.circuit_breaker.window: expected a duration like "250ms", "2s" or "1m", got "1x"',
    ])
  })
})
