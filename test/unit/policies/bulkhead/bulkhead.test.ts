import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { loadConfigText } from '../../../../src/config/load.ts'
import { GatewayError } from '../../../../src/core/errors.ts'
import { EventBus, type GatewayEventMap } from '../../../../src/core/events.ts'
import { bulkheadLayer, type QueueTimers } from '../../../../src/policies/bulkhead/index.ts'
import type { RouteContext } from '../../../../src/policies/policy.ts'
import { Exchange, type Step } from '../../../../src/proxy/exchange.ts'
import { ONE_ROUTE, rejection } from '../../fakes/policy-text.ts'
import type { BulkheadPolicy } from '../../../../src/policies/bulkhead/index.ts'
import { fakeGateway } from '../../fakes/security-fakes.ts'


function loadBulkhead(table: string): BulkheadPolicy | undefined {
  return loadConfigText(`${ONE_ROUTE}\n[routes.bulkhead]\n${table}\n`, 'x.toml').routes[0]!.policies.bulkhead
}

const problems = (table: string) => rejection(`${ONE_ROUTE}
[routes.bulkhead]
${table}
`)

describe('bulkhead config', () => {
  test('off unless a route or [defaults] sets it', () => {
    assert.equal(loadConfigText(ONE_ROUTE, 'x.toml').routes[0]!.policies.bulkhead, undefined)
  })

  test('max_queue defaults to 0: refuse at once, no queue timeout', () => {
    assert.deepEqual(loadBulkhead('max_concurrent = 50'), { maxConcurrent: 50, maxQueue: 0, queueTimeoutMs: 0 })
  })

  test('a queue without queue_timeout waits 1s', () => {
    assert.deepEqual(loadBulkhead('max_concurrent = 50\nmax_queue = 100'), { maxConcurrent: 50, maxQueue: 100, queueTimeoutMs: 1000 })
  })

  test('the issue example normalizes to milliseconds', () => {
    assert.deepEqual(loadBulkhead('max_concurrent = 50\nmax_queue = 100\nqueue_timeout = "100ms"'), {
      maxConcurrent: 50,
      maxQueue: 100,
      queueTimeoutMs: 100,
    })
  })

  test('[defaults] applies to routes that set none', () => {
    const config = loadConfigText(`${ONE_ROUTE}\n[defaults.bulkhead]\nmax_concurrent = 8\n`, 'x.toml')
    assert.deepEqual(config.routes[0]!.policies.bulkhead, { maxConcurrent: 8, maxQueue: 0, queueTimeoutMs: 0 })
  })

  test('bad values are reported with their key path', () => {
    assert.deepEqual(problems('max_concurrent = 0'), [
      { path: 'routes[0].bulkhead.max_concurrent', message: 'expected a whole number of at least 1, got 0' },
    ])
    assert.deepEqual(problems('max_concurrent = 1.5')[0]!.path, 'routes[0].bulkhead.max_concurrent')
    assert.deepEqual(problems('max_concurrent = "5"')[0]!.path, 'routes[0].bulkhead.max_concurrent')
    assert.deepEqual(problems('max_concurrent = 5\nmax_queue = -1'), [
      { path: 'routes[0].bulkhead.max_queue', message: 'expected a whole number of at least 0, got -1' },
    ])
    assert.deepEqual(problems('max_concurrent = 5\nmax_queue = 5\nqueue_timeout = 100')[0]!.path, 'routes[0].bulkhead.queue_timeout')
  })

  test('max_concurrent is required and unknown keys are refused', () => {
    assert.deepEqual(problems('max_queue = 5'), [{ path: 'routes[0].bulkhead.max_concurrent', message: 'required key missing' }])
    const [unknown] = problems('max_concurrent = 5\nmax_wait = "1s"')
    assert.equal(unknown!.path, 'routes[0].bulkhead.max_wait')
    assert.match(unknown!.message, /unknown key "max_wait" \(allowed: max_concurrent, max_queue, queue_timeout\)/)
  })

  test('queue_timeout without a queue is refused as meaningless', () => {
    const [problem] = problems('max_concurrent = 5\nqueue_timeout = "1s"')
    assert.equal(problem!.path, 'routes[0].bulkhead.queue_timeout')
    assert.match(problem!.message, /no effect while max_queue is 0/)
  })

  test('a queue with a zero timeout is refused: max_queue = 0 says "refuse at once"', () => {
    const [problem] = problems('max_concurrent = 5\nmax_queue = 5\nqueue_timeout = "0s"')
    assert.equal(problem!.path, 'routes[0].bulkhead.queue_timeout')
    assert.match(problem!.message, /at least "1ms".*max_queue = 0/)
  })
})

/** Queue timers the test fires by hand; `pending` shows every timer not yet fired or cleared. */
function manualTimers() {
  const pending = new Set<{ ms: number; fire(): void }>()
  const timers: QueueTimers = {
    set(expire, ms, waiter) {
      const timer = {
        ms,
        fire() {
          pending.delete(timer)
          expire(waiter)
        },
      }
      pending.add(timer)
      return timer
    },
    clear(handle) {
      pending.delete(handle as { ms: number; fire(): void })
    },
  }
  return { timers, pending, fireAll: () => [...pending].forEach((timer) => timer.fire()) }
}

/** An inner step whose calls the test answers or fails one by one. */
function heldUpstream() {
  const calls: Array<{ name: string; respond(): void; fail(error: unknown): void }> = []
  const step: Step = (exchange) =>
    new Promise((resolve, reject) =>
      calls.push({ name: exchange.requestId, respond: () => resolve(new Response('ok')), fail: reject }),
    )
  return { step, calls, order: () => calls.map((call) => call.name) }
}

function exchange(name: string): Exchange {
  return new Exchange(new Request(`http://gateway/${name}`), { remoteAddress: '127.0.0.1' }, name, `/${name}`, '', performance.now())
}

const settle = () => new Promise<void>((resolve) => setImmediate(resolve))

function setup(policy: BulkheadPolicy) {
  const events = new EventBus()
  const rejects: Array<GatewayEventMap['bulkhead_reject']> = []
  events.on('bulkhead_reject', (event) => rejects.push(event))
  const context = { route: { name: 'orders' }, events, keep: (_k: string, _p: unknown, create: () => unknown) => create(), gateway: fakeGateway() } as unknown as RouteContext
  const clock = manualTimers()
  const upstream = heldUpstream()
  const layer = bulkheadLayer(policy, context, clock.timers)
  const chain = layer(upstream.step)
  /** Sends a request through the bulkhead; the outcome is recorded rather than thrown. */
  const send = (name: string) => {
    const ex = exchange(name)
    const outcome = chain(ex).then(
      (response) => ({ response, error: undefined }),
      (error: unknown) => ({ response: undefined, error }),
    )
    return { exchange: ex, outcome }
  }
  return { layer, rejects, clock, upstream, send }
}

function assertBulkheadFull(error: unknown, message: RegExp): void {
  assert.ok(error instanceof GatewayError, `expected a GatewayError, got ${String(error)}`)
  assert.equal(error.code, 'bulkhead_full')
  assert.equal(error.status, 503)
  assert.match(error.message, message)
}

describe('bulkhead layer', () => {
  test('admits max_concurrent at once and refuses the next when there is no queue', async () => {
    const { layer, rejects, upstream, send } = setup({ maxConcurrent: 2, maxQueue: 0, queueTimeoutMs: 0 })
    send('a')
    send('b')
    const third = send('c')
    await settle()
    assert.deepEqual(upstream.order(), ['a', 'b'])
    assertBulkheadFull((await third.outcome).error, /all 2 concurrent slots are busy$/)
    assert.deepEqual(rejects, [{ route: 'orders', reason: 'full' }])
    assert.deepEqual(layer.snapshot(), { route: 'orders', active: 2, queued: 0, maxConcurrent: 2, maxQueue: 0 })
  })

  test('queues up to max_queue, refuses the rest at once', async () => {
    const { layer, rejects, clock, upstream, send } = setup({ maxConcurrent: 1, maxQueue: 2, queueTimeoutMs: 100 })
    send('a')
    send('b')
    send('c')
    const fourth = send('d')
    assertBulkheadFull((await fourth.outcome).error, /queue of 2 is full/)
    assert.deepEqual(upstream.order(), ['a'])
    assert.deepEqual(rejects, [{ route: 'orders', reason: 'full' }])
    assert.deepEqual(layer.snapshot(), { route: 'orders', active: 1, queued: 2, maxConcurrent: 1, maxQueue: 2 })
    assert.deepEqual([...clock.pending].map((timer) => timer.ms), [100, 100])
  })

  test('hands slots to waiters in arrival order; a newcomer cannot overtake the queue', async () => {
    const { layer, clock, upstream, send } = setup({ maxConcurrent: 1, maxQueue: 3, queueTimeoutMs: 100 })
    const first = send('a')
    const queued = ['b', 'c', 'd'].map(send)
    await settle()
    upstream.calls[0]!.respond()
    await first.outcome
    first.exchange.finish() // the response body is delivered: the slot goes to "b"
    const late = send('e') // arrives while "c" and "d" still wait
    for (const [index, request] of queued.entries()) {
      await settle()
      upstream.calls[index + 1]!.respond()
      await request.outcome
      request.exchange.finish()
    }
    await settle()
    assert.deepEqual(upstream.order(), ['a', 'b', 'c', 'd', 'e'])
    upstream.calls[4]!.respond()
    await late.outcome
    late.exchange.finish()
    assert.deepEqual(layer.snapshot().active, 0)
    assert.equal(clock.pending.size, 0, 'every queue timer is cleared on handover')
  })

  test('a queued request gives up after queue_timeout with 503 bulkhead_full', async () => {
    const { layer, rejects, clock, upstream, send } = setup({ maxConcurrent: 1, maxQueue: 1, queueTimeoutMs: 100 })
    const first = send('a')
    const second = send('b')
    await settle()
    assert.equal(clock.pending.size, 1)
    clock.fireAll()
    assertBulkheadFull((await second.outcome).error, /no concurrent slot came free within 100ms/)
    assert.deepEqual(rejects, [{ route: 'orders', reason: 'queue_timeout' }])
    assert.deepEqual(layer.snapshot(), { route: 'orders', active: 1, queued: 0, maxConcurrent: 1, maxQueue: 1 })
    // The slot it never got stays with "a", and goes free when "a" finishes.
    upstream.calls[0]!.respond()
    await first.outcome
    first.exchange.finish()
    assert.deepEqual(upstream.order(), ['a'])
    assert.equal(layer.snapshot().active, 0)
  })

  test('the slot is held until the exchange finishes, not until the response head arrives', async () => {
    const { layer, upstream, send } = setup({ maxConcurrent: 1, maxQueue: 1, queueTimeoutMs: 100 })
    const first = send('a')
    await settle()
    upstream.calls[0]!.respond()
    assert.ok((await first.outcome).response instanceof Response)
    assert.equal(layer.snapshot().active, 1, 'the body is still streaming')
    first.exchange.finish()
    assert.equal(layer.snapshot().active, 0)
    first.exchange.finish()
    assert.equal(layer.snapshot().active, 0, 'finishing twice releases once')
  })

  test('an inner failure releases the slot once, even though the app finishes the exchange too', async () => {
    const { layer, clock, upstream, send } = setup({ maxConcurrent: 1, maxQueue: 2, queueTimeoutMs: 100 })
    const first = send('a')
    const second = send('b')
    await settle()
    const failure = new GatewayError('upstream_unavailable', 'refused')
    upstream.calls[0]!.fail(failure)
    assert.equal((await first.outcome).error, failure)
    await settle()
    assert.deepEqual(upstream.order(), ['a', 'b'], 'the slot went to the waiter')
    first.exchange.finish() // what src/app.ts does after a thrown error
    assert.deepEqual(layer.snapshot(), { route: 'orders', active: 1, queued: 0, maxConcurrent: 1, maxQueue: 2 })
    const third = send('c')
    await settle()
    assert.deepEqual(upstream.order(), ['a', 'b'], '"b" still holds the only slot')
    assert.equal(layer.snapshot().queued, 1)
    upstream.calls[1]!.respond()
    await second.outcome
    second.exchange.finish()
    await settle()
    upstream.calls[2]!.respond()
    await third.outcome
    third.exchange.finish()
    assert.equal(layer.snapshot().active, 0)
    assert.equal(clock.pending.size, 0)
  })

  test('an abort while queued frees the entry and its timer, without a bulkhead event', async () => {
    const { layer, rejects, clock, upstream, send } = setup({ maxConcurrent: 1, maxQueue: 3, queueTimeoutMs: 100 })
    const first = send('a')
    const queued = ['b', 'c', 'd'].map(send)
    await settle()
    const gone = new GatewayError('client_closed', 'the client closed the connection')
    queued[1]!.exchange.controller.abort(gone)
    assert.equal((await queued[1]!.outcome).error, gone)
    assert.equal(layer.snapshot().queued, 2)
    assert.equal(clock.pending.size, 2)
    assert.deepEqual(rejects, [])
    // The others keep their places: "b" then "d".
    upstream.calls[0]!.respond()
    await first.outcome
    first.exchange.finish()
    await settle()
    upstream.calls[1]!.respond()
    await queued[0]!.outcome
    queued[0]!.exchange.finish()
    await settle()
    assert.deepEqual(upstream.order(), ['a', 'b', 'd'])
    upstream.calls[2]!.respond()
    await queued[2]!.outcome
    queued[2]!.exchange.finish()
    assert.deepEqual(layer.snapshot(), { route: 'orders', active: 0, queued: 0, maxConcurrent: 1, maxQueue: 3 })
    assert.equal(clock.pending.size, 0)
  })

  test('an exchange aborted before it would queue is refused at once and never queued', async () => {
    const { layer, clock, send } = setup({ maxConcurrent: 1, maxQueue: 1, queueTimeoutMs: 100 })
    send('a')
    const gone = new GatewayError('upstream_timeout', 'no complete response within 5ms')
    const late = exchange('b')
    late.controller.abort(gone)
    await assert.rejects(layer((ex) => Promise.resolve(new Response(ex.requestId)))(late), (error) => error === gone)
    assert.equal(layer.snapshot().queued, 0)
    assert.equal(clock.pending.size, 0)
  })

  test('the real timers expire a queued request too', async () => {
    const events = new EventBus()
    const context = { route: { name: 'orders' }, events, keep: (_k: string, _p: unknown, create: () => unknown) => create(), gateway: fakeGateway() } as unknown as RouteContext
    const layer = bulkheadLayer({ maxConcurrent: 1, maxQueue: 1, queueTimeoutMs: 5 }, context)
    const chain = layer(() => new Promise<Response>(() => {}))
    void chain(exchange('a'))
    await assert.rejects(chain(exchange('b')), (error) => error instanceof GatewayError && error.code === 'bulkhead_full')
    assert.deepEqual(layer.snapshot(), { route: 'orders', active: 1, queued: 0, maxConcurrent: 1, maxQueue: 1 })
  })
})
