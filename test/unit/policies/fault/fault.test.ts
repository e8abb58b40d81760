import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { loadConfigText } from '../../../../src/config/load.ts'
import { GatewayError } from '../../../../src/core/errors.ts'
import { EventBus, type GatewayEventMap } from '../../../../src/core/events.ts'
import { buildRouteChain } from '../../../../src/gateway/pipeline.ts'
import type { RouteContext } from '../../../../src/policies/policy.ts'
import { faultLayer, headerAbortStatus, headerDelayMs } from '../../../../src/policies/fault/index.ts'
import { Exchange, type Step } from '../../../../src/proxy/exchange.ts'
import type { UpstreamRuntime } from '../../../../src/upstream/upstream.ts'
import { StateCarrier } from '../../../../src/core/state-carrier.ts'
import { ONE_ROUTE, problemLines } from '../../fakes/policy-text.ts'
import type { FaultPolicy } from '../../../../src/policies/fault/index.ts'
import { fakeGateway } from '../../fakes/security-fakes.ts'

const loadFault = (table: string) => loadConfigText(`${ONE_ROUTE}\n[routes.fault]\n${table}\n`, 'x.toml').routes[0]!.policies.fault

describe('fault config', () => {
  it('the issue example', () => {
    assert.deepEqual(loadFault('delay = { percent = 10, duration = "2s" }\nabort = { percent = 5, status = 503 }\nheader_control = false'), {
      delay: { percent: 10, durationMs: 2000 },
      abort: { percent: 5, status: 503 },
      headerControl: false,
    })
  })

  it('header control alone, fractional percentages, and [defaults]', () => {
    assert.deepEqual(loadFault('header_control = true'), { headerControl: true })
    assert.deepEqual(loadFault('abort = { percent = 0.1, status = 500 }'), { abort: { percent: 0.1, status: 500 }, headerControl: false })
    const config = loadConfigText(`${ONE_ROUTE}\n[defaults.fault]\nheader_control = true\n`, 'x.toml')
    assert.deepEqual(config.routes[0]!.policies.fault, { headerControl: true })
  })

  it('refuses an empty table, a missing percent, and out-of-range values', () => {
    assert.deepEqual(problemLines(`${ONE_ROUTE}\n[routes.fault]\nheader_control = false\n`), ['routes[0].fault: expected delay, abort or header_control = true'])
    assert.deepEqual(problemLines(`${ONE_ROUTE}\n[routes.fault]\nabort = { status = 503 }\n`), ['routes[0].fault.abort.percent: required key missing'])
    assert.deepEqual(problemLines(`${ONE_ROUTE}\n[routes.fault]\nabort = { percent = 100.5, status = 600 }\ndelay = { percent = 1, duration = "0s" }\n`), [
      'routes[0].fault.delay.duration: expected a duration above zero, like "200ms" or "10s", got "0s"',
      'routes[0].fault.abort.percent: expected a percentage from 0 to 100, like 10 or 0.5, got 100.5',
      'routes[0].fault.abort.status: expected a whole number from 200 to 599, got 600',
    ])
  })

  it('reads header values strictly and ignores the rest', () => {
    assert.equal(headerDelayMs('500'), 500)
    assert.equal(headerDelayMs(' 20 '), 20)
    for (const bad of ['0', '-5', '1.5', '2s', '', '99999999999']) assert.equal(headerDelayMs(bad), undefined, bad)
    assert.equal(headerAbortStatus('503'), 503)
    for (const bad of ['600', '199', '50', 'abc', '5031']) assert.equal(headerAbortStatus(bad), undefined, bad)
  })
})

function harness(policy: FaultPolicy, random: () => number = () => assert.fail('no random draw expected')) {
  const events = new EventBus()
  const injected: Array<GatewayEventMap['fault_injected']> = []
  events.on('fault_injected', (event) => injected.push(event))
  const context = {
    route: { name: 'orders', timeoutMs: 0 },
    upstream: { config: { name: 'orders-v1' } } as UpstreamRuntime,
    upstreams: new Map(),
    events,
    gateway: fakeGateway(),
    forwardTo: () => assert.fail('the fault layer never forwards itself'),
    keep: (_kind, _policy, create) => create(),
    now: () => 0,
    random,
  } satisfies RouteContext
  let upstreamCalls = 0
  let upstream: Step = async () => new Response('from upstream')
  const step = faultLayer(policy, context)((exchange) => {
    upstreamCalls++
    return upstream(exchange)
  })
  return {
    injected,
    get upstreamCalls() {
      return upstreamCalls
    },
    setUpstream(next: Step) {
      upstream = next
    },
    exchange(headers: Record<string, string> = {}) {
      return new Exchange(new Request('http://gateway/orders', { headers }), { remoteAddress: '127.0.0.1' }, 'req-9', '/orders', '', 0)
    },
    run: (exchange: Exchange) => step(exchange),
  }
}

describe('fault layer', () => {
  it('an abort answers with the status as if from the upstream, which is never called', async () => {
    const fault = harness({ abort: { percent: 100, status: 503 }, headerControl: false })
    const exchange = fault.exchange()
    const response = await fault.run(exchange)
    assert.equal(response.status, 503)
    assert.equal(response.headers.get('x-pillion-fault'), 'abort')
    assert.equal(response.headers.get('x-pillion-error'), 'fault_injected')
    assert.deepEqual(await response.json(), { code: 'fault_injected', message: 'injected fault: abort with status 503', request_id: 'req-9' })
    assert.equal(fault.upstreamCalls, 0)
    assert.equal(exchange.fault, 'abort')
    assert.deepEqual(fault.injected, [{ route: 'orders', upstream: 'orders-v1', kind: 'abort', source: 'percent', status: 503 }])
  })

  it('a percentage draws per request', async () => {
    let point = 0
    const fault = harness({ abort: { percent: 5, status: 500 }, headerControl: false }, () => point)
    point = 0.049
    assert.equal((await fault.run(fault.exchange())).status, 500)
    point = 0.05
    assert.equal((await fault.run(fault.exchange())).status, 200)
    assert.equal(fault.upstreamCalls, 1)
  })

  it('a 204 abort has no body', async () => {
    const fault = harness({ abort: { percent: 100, status: 204 }, headerControl: false })
    const response = await fault.run(fault.exchange())
    assert.equal(response.status, 204)
    assert.equal(response.body, null)
  })

  it('a delay waits, then proceeds, and says so on the answer', async () => {
    const fault = harness({ delay: { percent: 100, durationMs: 1 }, headerControl: false })
    const exchange = fault.exchange()
    const response = await fault.run(exchange)
    assert.equal(await response.text(), 'from upstream')
    assert.equal(response.headers.get('x-pillion-fault'), 'delay')
    assert.equal(exchange.fault, 'delay')
    assert.deepEqual(fault.injected, [{ route: 'orders', upstream: 'orders-v1', kind: 'delay', source: 'percent', delayMs: 1 }])
  })

  it('a delay is cut short by the try signal (route or per-try timeout), with its reason', async () => {
    const fault = harness({ delay: { percent: 100, durationMs: 3_600_000 }, headerControl: false })
    const exchange = fault.exchange()
    const attempt = new AbortController()
    exchange.attemptSignal = attempt.signal
    const pending = fault.run(exchange)
    const reason = new GatewayError('upstream_timeout', 'no response within per_try_timeout 100ms')
    attempt.abort(reason)
    await assert.rejects(pending, (error) => error === reason)
    assert.equal(fault.upstreamCalls, 0)
  })

  it('delay then abort, both marked', async () => {
    const fault = harness({ delay: { percent: 100, durationMs: 1 }, abort: { percent: 100, status: 502 }, headerControl: false })
    const exchange = fault.exchange()
    assert.equal((await fault.run(exchange)).status, 502)
    assert.equal(exchange.fault, 'delay,abort')
    assert.deepEqual(fault.injected.map((event) => event.kind), ['delay', 'abort'])
  })

  it('header control injects per request and strips the headers before forwarding', async () => {
    const fault = harness({ headerControl: true })
    const aborted = fault.exchange({ 'x-pillion-fault-abort': '503' })
    assert.equal((await fault.run(aborted)).status, 503)
    assert.equal(fault.injected[0]!.source, 'header')
    const delayed = fault.exchange({ 'x-pillion-fault-delay': '1' })
    const response = await fault.run(delayed)
    assert.equal(response.headers.get('x-pillion-fault'), 'delay')
    assert.deepEqual(delayed.upstreamHeaderEdits, [['x-pillion-fault-delay', null]])
    const plain = fault.exchange()
    assert.equal((await fault.run(plain)).status, 200)
    assert.equal(plain.upstreamHeaderEdits, undefined, 'nothing to strip, nothing allocated')
  })

  it('without header control the headers are ignored and passed on', async () => {
    const fault = harness({ abort: { percent: 0, status: 503 }, headerControl: false })
    const exchange = fault.exchange({ 'x-pillion-fault-abort': '503', 'x-pillion-fault-delay': '100000' })
    assert.equal((await fault.run(exchange)).status, 200)
    assert.equal(exchange.upstreamHeaderEdits, undefined)
    assert.equal(exchange.fault, undefined)
  })
})

describe('fault in the chain', () => {
  it('sits inside retry and the breaker: an injected abort is retried and counted as a failure', async () => {
    const config = loadConfigText(
      `${ONE_ROUTE}
[routes.retry]
attempts = 3
backoff = { base = "1ms", max = "1ms" }
[routes.circuit_breaker]
window_requests = 3
min_requests = 3
[routes.fault]
abort = { percent = 100, status = 503 }
`,
      'x.toml',
    )
    const events = new EventBus()
    const retries: number[] = []
    const transitions: string[] = []
    let injected = 0
    events.on('retry', (event) => retries.push(event.attempt))
    events.on('breaker_transition', (event) => transitions.push(event.to))
    events.on('fault_injected', () => injected++)
    const upstream = { config: config.upstreams.local, pick: () => assert.fail('an injected abort never reaches forward') } as unknown as UpstreamRuntime
    const chain = buildRouteChain(config.routes[0]!, {
      carrier: new StateCarrier(),
      send: () => assert.fail('nothing is sent'),
      events,
      upstreams: new Map([['local', upstream]]),
      gateway: fakeGateway(),
    })
    const exchange = new Exchange(new Request('http://gateway/x'), { remoteAddress: '127.0.0.1' }, 'id', '/x', '', 0)
    const response = await chain(exchange)
    assert.equal(response.status, 503)
    assert.equal(response.headers.get('x-pillion-attempts'), '3')
    assert.deepEqual(retries, [2, 3])
    assert.equal(injected, 3)
    assert.deepEqual(transitions, ['open'], 'three injected failures of three calls open the breaker')
    const next = chain(new Exchange(new Request('http://gateway/x'), { remoteAddress: '127.0.0.1' }, 'id', '/x', '', 0))
    await assert.rejects(next, (error) => error instanceof GatewayError && error.code === 'circuit_open')
  })
})
