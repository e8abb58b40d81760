import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import * as v from 'valibot'
import { loadConfigText } from '../../../../src/config/load.ts'
import { GatewayError } from '../../../../src/core/errors.ts'
import { EventBus, type GatewayEventMap } from '../../../../src/core/events.ts'
import type { RouteContext } from '../../../../src/policies/policy.ts'
import { mirrorLayer, mirrorPolicy } from '../../../../src/policies/mirror/index.ts'
import { Exchange, type Step } from '../../../../src/proxy/exchange.ts'
import type { UpstreamRuntime } from '../../../../src/upstream/upstream.ts'
import { ONE_ROUTE, problemLines } from '../../fakes/policy-text.ts'
import type { MirrorPolicy } from '../../../../src/policies/mirror/index.ts'
import { fakeGateway } from '../../fakes/security-fakes.ts'

const WITH_SHADOW = `${ONE_ROUTE.replace('[[routes]]', '[upstreams.shadow]\nendpoints = ["http://127.0.0.1:3001"]\n\n[[routes]]')}`

const policyOf = (table: Record<string, unknown>): MirrorPolicy => v.parse(mirrorPolicy.schema, table)

describe('mirror config', () => {
  it('defaults: every request, 100 copies in flight, bodies up to 64kb, 5s per copy', () => {
    const loaded = loadConfigText(`${WITH_SHADOW}\n[routes.mirror]\nupstream = "shadow"\n`, 'x.toml').routes[0]!.policies.mirror
    assert.deepEqual(loaded, { upstream: 'shadow', percent: 100, maxInFlight: 100, maxBodyBytes: 65536, timeoutMs: 5000 })
  })

  it('takes fractional percentages, sizes and durations', () => {
    assert.deepEqual(policyOf({ upstream: 'shadow', percent: 0.5, max_in_flight: 3, max_body: '1kb', timeout: '250ms' }), {
      upstream: 'shadow',
      percent: 0.5,
      maxInFlight: 3,
      maxBodyBytes: 1024,
      timeoutMs: 250,
    })
  })

  it('refuses an unknown upstream (in a route and in [defaults]) and out-of-range values', () => {
    assert.deepEqual(problemLines(`${WITH_SHADOW}\n[routes.mirror]\nupstream = "nowhere"\n`), [
      'routes[0].mirror.upstream: no upstream named "nowhere" (defined: local, shadow)',
    ])
    assert.deepEqual(problemLines(`${WITH_SHADOW}\n[defaults.mirror]\nupstream = "nowhere"\n`), [
      'defaults.mirror.upstream: no upstream named "nowhere" (defined: local, shadow)',
    ])
    assert.deepEqual(problemLines(`${WITH_SHADOW}\n[routes.mirror]\nupstream = "shadow"\npercent = -1\nmax_in_flight = 0\ntimeout = "0s"\n`), [
      'routes[0].mirror.percent: expected a percentage from 0 to 100, like 10 or 0.5, got -1',
      'routes[0].mirror.max_in_flight: expected a whole number of at least 1, got 0',
      'routes[0].mirror.timeout: expected a duration above zero, like "200ms" or "10s", got "0s"',
    ])
  })
})

/** What the fake shadow upstream was sent, and a way to answer each copy when the test chooses. */
interface Copy {
  exchange: Exchange
  headers: Headers
  body: string
  answer(response: Response | Error): void
}

function harness(policy: MirrorPolicy, options: { random?: () => number } = {}) {
  const events = new EventBus()
  const done: Array<GatewayEventMap['mirror_done']> = []
  const dropped: Array<GatewayEventMap['mirror_dropped']['reason']> = []
  events.on('mirror_done', (event) => done.push(event))
  events.on('mirror_dropped', (event) => dropped.push(event.reason))
  const shadow = { config: { name: 'shadow' } } as UpstreamRuntime
  const copies: Copy[] = []
  const arrivals: Array<(copy: Copy) => void> = []
  const shadowStep: Step = async (exchange) => {
    // What forward would send: the client's headers with the layers' edits applied.
    const headers = new Headers(exchange.request.headers)
    for (const [name, value] of exchange.upstreamHeaderEdits ?? []) value === null ? headers.delete(name) : headers.set(name, value)
    const body = exchange.body === null ? '' : new TextDecoder().decode(exchange.body as Uint8Array)
    return new Promise<Response>((resolve, reject) => {
      const onAbort = () => reject(exchange.attemptSignal.reason)
      exchange.attemptSignal.addEventListener('abort', onAbort, { once: true })
      const copy: Copy = { exchange, headers, body, answer: (answer) => (answer instanceof Error ? reject(answer) : resolve(answer)) }
      copies.push(copy)
      arrivals.shift()?.(copy)
    })
  }
  const context = {
    route: { name: 'orders', timeoutMs: 0 },
    upstream: { config: { name: 'orders' } } as UpstreamRuntime,
    upstreams: new Map([['shadow', shadow]]),
    events,
    gateway: fakeGateway(),
    forwardTo: (upstream: UpstreamRuntime) => {
      assert.equal(upstream, shadow)
      return shadowStep
    },
    keep: (_kind, _policy, create) => create(),
    now: () => 0,
    random: options.random ?? Math.random,
  } satisfies RouteContext
  const primaries: Exchange[] = []
  const step = mirrorLayer(policy, context)(async (exchange) => {
    primaries.push(exchange)
    const body = exchange.body === null ? '' : exchange.body instanceof Uint8Array ? new TextDecoder().decode(exchange.body) : await new Response(exchange.body).text()
    return new Response(`primary got ${body.length} bytes`)
  })
  const eventDone = () => new Promise<GatewayEventMap['mirror_done']>((resolve) => events.on('mirror_done', resolve))
  return {
    copies,
    done,
    dropped,
    primaries,
    eventDone,
    /** Resolves with the next copy the shadow receives. */
    nextCopy: () => new Promise<Copy>((resolve) => arrivals.push(resolve)),
    call(init: { method?: string; body?: string | ReadableStream<Uint8Array>; headers?: Record<string, string> } = {}) {
      const request = new Request('http://gateway/orders?x=1', { ...init, duplex: 'half' } as RequestInit)
      const exchange = new Exchange(request, { remoteAddress: '10.0.0.1' }, 'req-1', '/orders', '?x=1', 0)
      exchange.setUpstreamHeader('x-claim', 'alice')
      return step(exchange)
    },
  }
}

const POLICY: MirrorPolicy = { upstream: 'shadow', percent: 100, maxInFlight: 2, maxBodyBytes: 16, timeoutMs: 5000 }

describe('mirror layer', () => {
  it('answers the client while the copy is still unanswered; the copy is marked and carries the edits', async () => {
    const mirror = harness(POLICY)
    const arrived = mirror.nextCopy()
    const response = await mirror.call({ headers: { 'x-tenant': 'acme' } })
    assert.equal(await response.text(), 'primary got 0 bytes')
    const copy = await arrived
    assert.equal(copy.headers.get('x-pillion-shadow'), '1')
    assert.equal(copy.headers.get('x-claim'), 'alice')
    assert.equal(copy.headers.get('x-tenant'), 'acme')
    assert.equal(copy.exchange.requestId, 'req-1')
    assert.equal(copy.exchange.search, '?x=1')
    assert.equal(mirror.primaries[0]!.upstreamHeaderEdits?.some(([name]) => name === 'x-pillion-shadow'), false, 'the original is not marked')
    assert.equal(mirror.done.length, 0, 'the copy is still in flight')
    const finished = mirror.eventDone()
    copy.answer(new Response('shadow body'))
    assert.deepEqual({ ...(await finished), durationMs: 0 }, { route: 'orders', upstream: 'shadow', status: 200, error: undefined, durationMs: 0 })
  })

  it('copies a small body to both, and the original becomes replayable', async () => {
    const mirror = harness(POLICY)
    const arrived = mirror.nextCopy()
    const response = await mirror.call({ method: 'POST', body: 'hello' })
    assert.equal(await response.text(), 'primary got 5 bytes')
    assert.equal((await arrived).body, 'hello')
    assert.ok(mirror.primaries[0]!.replayableBody !== undefined)
  })

  it('does not copy a body larger than max_body, and streams it to the original untouched', async () => {
    const mirror = harness(POLICY)
    const big = 'x'.repeat(100)
    const declared = await mirror.call({ method: 'POST', body: big })
    assert.equal(await declared.text(), 'primary got 100 bytes')
    const chunks = ['x'.repeat(10), 'y'.repeat(10), 'z'.repeat(10)]
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        const chunk = chunks.shift()
        if (chunk === undefined) controller.close()
        else controller.enqueue(new TextEncoder().encode(chunk))
      },
    })
    const streamed = await mirror.call({ method: 'POST', body: stream })
    assert.equal(await streamed.text(), 'primary got 30 bytes')
    assert.deepEqual(mirror.dropped, ['body_too_large', 'body_too_large'])
    assert.equal(mirror.copies.length, 0)
  })

  it('drops copies past max_in_flight and counts them; a finished copy frees its slot', async () => {
    const mirror = harness(POLICY)
    for (let i = 0; i < 5; i++) assert.equal((await mirror.call()).status, 200)
    assert.equal(mirror.copies.length, 2)
    assert.deepEqual(mirror.dropped, ['max_in_flight', 'max_in_flight', 'max_in_flight'])
    const finished = mirror.eventDone()
    mirror.copies[0]!.answer(new Response(null, { status: 204 }))
    await finished
    await mirror.call()
    assert.equal(mirror.copies.length, 3)
  })

  it('a failing copy is invisible to the client and reported with its code', async () => {
    const mirror = harness(POLICY)
    const arrived = mirror.nextCopy()
    assert.equal((await mirror.call()).status, 200)
    const finished = mirror.eventDone()
    ;(await arrived).answer(new GatewayError('upstream_unavailable', 'refused', { failure: 'connect-failure' }))
    assert.equal((await finished).error, 'upstream_unavailable')
  })

  it('a copy that outlives its timeout is aborted', async () => {
    const mirror = harness({ ...POLICY, timeoutMs: 1 })
    const finished = mirror.eventDone()
    assert.equal((await mirror.call()).status, 200)
    const event = await finished
    assert.equal(event.error, 'upstream_timeout')
    assert.ok(mirror.copies[0]!.exchange.signal.aborted)
  })

  it('is not cancelled when the client goes away', async () => {
    const mirror = harness(POLICY)
    const arrived = mirror.nextCopy()
    await mirror.call()
    mirror.primaries[0]!.controller.abort(new GatewayError('client_closed', 'gone'))
    assert.equal((await arrived).exchange.signal.aborted, false)
  })

  it('samples by percent', async () => {
    let point = 0.2
    const mirror = harness({ ...POLICY, percent: 25, maxInFlight: 100 }, { random: () => point })
    await mirror.call()
    point = 0.25
    await mirror.call()
    assert.equal(mirror.copies.length, 1, '0.2 × 100 < 25 is copied, 0.25 × 100 is not')
    const none = harness({ ...POLICY, percent: 0 }, { random: () => assert.fail('no draw at 0%') })
    await none.call()
    assert.equal(none.copies.length, 0)
  })
})
