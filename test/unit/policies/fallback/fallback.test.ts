import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import * as v from 'valibot'
import { loadConfigText } from '../../../../src/config/load.ts'
import { GatewayError } from '../../../../src/core/errors.ts'
import { EventBus, type GatewayEventMap } from '../../../../src/core/events.ts'
import type { RouteContext } from '../../../../src/policies/policy.ts'
import { fallbackLayer, fallbackPolicy } from '../../../../src/policies/fallback/index.ts'
import { StaleCache, type StaleEntry } from '../../../../src/policies/fallback/stale-cache.ts'
import { Exchange, type Step } from '../../../../src/proxy/exchange.ts'
import type { UpstreamRuntime } from '../../../../src/upstream/upstream.ts'
import { ONE_ROUTE, problemLines } from '../../fakes/policy-text.ts'
import type { FallbackPolicy } from '../../../../src/policies/fallback/index.ts'
import { fakeGateway } from '../../fakes/security-fakes.ts'

function policyOf(table: Record<string, unknown>): FallbackPolicy {
  return v.parse(fallbackPolicy.schema, table)
}

const text = (response: Response) => response.text()

interface RequestOptions {
  method?: string
  path?: string
  headers?: Record<string, string>
  body?: ReadableStream<Uint8Array> | string
}

/** A fallback layer over a fake primary step and a fake "readonly" upstream step; the clock is the test's. */
function harness(table: Record<string, unknown>, options: { timeoutMs?: number } = {}) {
  const clock = { now: 0 }
  const events = new EventBus()
  const served: Array<GatewayEventMap['fallback_served']> = []
  events.on('fallback_served', (event) => served.push(event))
  const readonly = { config: { name: 'readonly' } } as UpstreamRuntime
  const seenByAlternate: Exchange[] = []
  let alternate: Step = async () => new Response('from readonly')
  let primary: Step = async () => new Response('from primary')
  const context = {
    route: { name: 'api', timeoutMs: options.timeoutMs ?? 0 },
    upstream: { config: { name: 'orders' } } as UpstreamRuntime,
    upstreams: new Map([['readonly', readonly]]),
    events,
    gateway: fakeGateway(),
    forwardTo: (upstream: UpstreamRuntime) => {
      assert.equal(upstream, readonly)
      return (exchange: Exchange) => {
        seenByAlternate.push(exchange)
        return alternate(exchange)
      }
    },
    keep: (_kind, _policy, create) => create(),
    now: () => clock.now,
    random: Math.random,
  } satisfies RouteContext
  const step = fallbackLayer(policyOf(table), context)((exchange) => primary(exchange))
  return {
    clock,
    served,
    seenByAlternate,
    primary(next: Step) {
      primary = next
    },
    alternate(next: Step) {
      alternate = next
    },
    exchange({ method = 'GET', path = '/items', headers, body }: RequestOptions = {}) {
      const url = new URL(path, 'http://gateway')
      const init: RequestInit & { duplex?: string } = { method, headers, body, duplex: 'half' }
      return new Exchange(new Request(url, init), { remoteAddress: '127.0.0.1' }, 'req-7', url.pathname, url.search, clock.now)
    },
    run(exchange: Exchange) {
      return step(exchange)
    },
    call(options?: RequestOptions) {
      return step(this.exchange(options))
    },
  }
}

const open = () => Promise.reject(new GatewayError('circuit_open', 'open'))

/** A body the test feeds chunk by chunk; `cancelled` says whether, and with what reason, its reader cancelled it. */
function feed() {
  let controller!: ReadableStreamDefaultController<Uint8Array>
  const state: { cancelled?: { reason: unknown } } = {}
  const stream = new ReadableStream<Uint8Array>({ start: (c) => void (controller = c), cancel: (reason) => void (state.cancelled = { reason }) })
  return {
    stream,
    get cancelled() {
      return state.cancelled
    },
    push: (chunk: string) => controller.enqueue(new TextEncoder().encode(chunk)),
    end: () => controller.close(),
  }
}

describe('fallback: static', () => {
  it('answers a rescued error with the static body, the header saying so, and the request id', async () => {
    const h = harness({ status: 200, content_type: 'application/json', body: '{"items":[],"degraded":true}' })
    h.primary(open)
    const response = await h.call()
    assert.equal(response.status, 200)
    assert.equal(response.headers.get('content-type'), 'application/json')
    assert.equal(response.headers.get('x-pillion-fallback'), 'static')
    assert.equal(response.headers.get('x-request-id'), 'req-7')
    assert.equal(await text(response), '{"items":[],"degraded":true}')
    assert.deepEqual(h.served, [{ route: 'api', kind: 'static', cause: 'circuit_open' }])
  })

  it('rescues upstream_unavailable, upstream_timeout and bulkhead_full too, but not client_closed or bugs', async () => {
    const h = harness({ body: 'degraded' })
    for (const code of ['upstream_unavailable', 'upstream_timeout', 'bulkhead_full'] as const) {
      h.primary(() => Promise.reject(new GatewayError(code, code)))
      assert.equal(await text(await h.call()), 'degraded')
    }
    const gone = new GatewayError('client_closed', 'gone')
    h.primary(() => Promise.reject(gone))
    await assert.rejects(h.call(), (error) => error === gone)
    const bug = new TypeError('oops')
    h.primary(() => Promise.reject(bug))
    await assert.rejects(h.call(), (error) => error === bug)
  })

  it('replaces an upstream 5xx and cancels its body; passes other statuses through', async () => {
    const h = harness({ status: 503, body: 'try later' })
    const upstream = feed()
    h.primary(async () => new Response(upstream.stream, { status: 500 }))
    const response = await h.call()
    assert.deepEqual([response.status, await text(response)], [503, 'try later'])
    assert.ok(upstream.cancelled, 'the replaced 5xx body was cancelled')
    assert.equal(h.served[0]!.cause, 'status_500')
    h.primary(async () => new Response('missing', { status: 404 }))
    const notFound = await h.call()
    assert.deepEqual([notFound.status, notFound.headers.get('x-pillion-fallback'), await text(notFound)], [404, null, 'missing'])
  })

  it('defaults to 200 text/plain, and sends no body to HEAD', async () => {
    const h = harness({ body: 'hello' })
    h.primary(open)
    const response = await h.call()
    assert.deepEqual([response.status, response.headers.get('content-type')], [200, 'text/plain; charset=utf-8'])
    const head = await h.call({ method: 'HEAD' })
    assert.equal(head.body, null)
    const noContent = harness({ status: 204 })
    noContent.primary(open)
    const empty = await noContent.call()
    assert.deepEqual([empty.status, empty.body, empty.headers.get('content-type')], [204, null, null])
  })
})

describe('fallback: none applies', () => {
  it('rethrows the error and returns the 5xx when only stale is set and nothing is cached', async () => {
    const h = harness({ stale: '5m' })
    const error = new GatewayError('circuit_open', 'open')
    h.primary(() => Promise.reject(error))
    await assert.rejects(h.call(), (thrown) => thrown === error)
    h.primary(async () => new Response('down', { status: 502 }))
    const response = await h.call()
    assert.deepEqual([response.status, await text(response)], [502, 'down'])
    assert.deepEqual(h.served, [])
  })
})

describe('fallback: stale', () => {
  it('copies a good GET answer as it streams, without holding bytes back, and serves it when the upstream fails', async () => {
    const h = harness({ stale: '5m', body: 'static' })
    const upstream = feed()
    h.primary(async () => new Response(upstream.stream, { headers: { 'content-type': 'application/json', 'x-request-id': 'req-old' } }))
    const first = await h.call({ path: '/items?page=2' })
    const reader = first.body!.getReader()
    upstream.push('{"items":')
    assert.equal(new TextDecoder().decode((await reader.read()).value), '{"items":', 'the first chunk reaches the client before the upstream is done')
    upstream.push('[1]}')
    upstream.end()
    assert.equal(new TextDecoder().decode((await reader.read()).value), '[1]}')
    assert.equal((await reader.read()).done, true)

    h.clock.now = 61_000
    h.primary(open)
    const stale = await h.call({ path: '/items?page=2' })
    assert.equal(stale.status, 200)
    assert.equal(stale.headers.get('x-pillion-fallback'), 'stale')
    assert.equal(stale.headers.get('x-request-id'), 'req-7')
    assert.equal(stale.headers.get('content-type'), 'application/json')
    assert.equal(stale.headers.get('age'), '61')
    assert.equal(stale.headers.get('cache-control'), 'no-cache')
    assert.equal(await text(stale), '{"items":[1]}')
    assert.deepEqual(h.served.map((event) => event.kind), ['stale'])

    const otherQuery = await h.call({ path: '/items?page=3' })
    assert.equal(otherQuery.headers.get('x-pillion-fallback'), 'static', 'the key includes the query')
    const head = await h.call({ method: 'HEAD', path: '/items?page=2' })
    assert.equal(head.headers.get('x-pillion-fallback'), 'static', 'the key includes the method')
  })

  it('serves nothing older than stale', async () => {
    const h = harness({ stale: '1m', body: 'static' })
    h.primary(async () => new Response('fresh'))
    await text(await h.call())
    h.primary(open)
    h.clock.now = 59_999
    assert.equal(await text(await h.call()), 'fresh')
    h.clock.now = 60_000
    assert.equal(await text(await h.call()), 'static')
  })

  it('stores nothing from an answer that was cut off, cancelled, not 2xx, or not a GET/HEAD', async () => {
    const h = harness({ stale: '5m', body: 'static' })
    const cut = feed()
    h.primary(async () => new Response(cut.stream))
    const reader = (await h.call({ path: '/cancelled' })).body!.getReader()
    cut.push('part')
    await reader.read()
    await reader.cancel('client left')
    assert.deepEqual(cut.cancelled, { reason: 'client left' }, 'the cancel reaches the upstream body')
    h.primary(async () => new Response('created', { status: 201 }))
    await text(await h.call({ method: 'POST', path: '/posted' }))
    h.primary(async () => new Response('moved', { status: 301 }))
    await text(await h.call({ path: '/moved' }))
    h.primary(open)
    for (const [method, path] of [['GET', '/cancelled'], ['POST', '/posted'], ['GET', '/moved']]) {
      assert.equal(await text(await h.call({ method, path })), 'static', `${method} ${path}`)
    }
  })

  it('does not keep personal or uncacheable answers', async () => {
    const h = harness({ stale: '5m', body: 'static' })
    const cases: Array<[string, RequestOptions, HeadersInit]> = [
      ['/cookie-set', {}, { 'set-cookie': 'session=1' }],
      ['/no-store', {}, { 'cache-control': 'no-store' }],
      ['/private', {}, { 'cache-control': 'private, max-age=60' }],
      ['/authorized', { headers: { authorization: 'Bearer x' } }, {}],
      ['/vary-star', {}, { vary: '*' }],
    ]
    for (const [path, request, headers] of cases) {
      h.primary(async () => new Response('personal', { headers }))
      await text(await h.call({ ...request, path }))
    }
    h.primary(async () => new Response('shared', { headers: { 'cache-control': 'public' } }))
    await text(await h.call({ path: '/public', headers: { authorization: 'Bearer x' } }))
    h.primary(open)
    for (const [path, request] of cases) assert.equal(await text(await h.call({ ...request, path })), 'static', path)
    assert.equal(await text(await h.call({ path: '/public', headers: { authorization: 'Bearer y' } })), 'shared')
  })

  it('serves a compressed or Vary-ing answer only to a request it suits', async () => {
    const h = harness({ stale: '5m', body: 'static' })
    h.primary(async () => new Response('gz', { headers: { 'content-encoding': 'gzip', vary: 'Accept-Encoding, Accept-Language' } }))
    await text(await h.call({ headers: { 'accept-encoding': 'gzip, br', 'accept-language': 'de' } }))
    h.primary(open)
    assert.equal(await text(await h.call({ headers: { 'accept-language': 'de' } })), 'static', 'no gzip support')
    assert.equal(await text(await h.call({ headers: { 'accept-encoding': 'gzip', 'accept-language': 'en' } })), 'static', 'other language')
    assert.equal(await text(await h.call({ headers: { 'accept-encoding': 'gzip', 'accept-language': 'de' } })), 'gz')
  })
})

describe('StaleCache bounds', () => {
  const request = new Request('http://gateway/')
  const entry = (bytes: number, storedAt = 0): StaleEntry => ({
    status: 200,
    statusText: '',
    headers: new Headers(),
    body: new Uint8Array(bytes),
    storedAt,
    vary: [],
  })

  it('evicts the least recently used entry beyond maxEntries', () => {
    const cache = new StaleCache(60_000, { maxEntryBytes: 100, maxEntries: 2, maxTotalBytes: 1000 })
    cache.put('a', entry(1))
    cache.put('b', entry(1))
    assert.ok(cache.get('a', request, 0), 'a is now the most recently used')
    cache.put('c', entry(1))
    assert.equal(cache.size, 2)
    assert.equal(cache.get('b', request, 0), undefined)
    assert.ok(cache.get('a', request, 0))
    assert.ok(cache.get('c', request, 0))
  })

  it('keeps the total of body bytes under maxTotalBytes, and never stores an oversize body', () => {
    const cache = new StaleCache(60_000, { maxEntryBytes: 10, maxEntries: 100, maxTotalBytes: 25 })
    cache.put('big', entry(11))
    assert.deepEqual([cache.size, cache.bytes], [0, 0])
    for (const key of ['a', 'b', 'c']) cache.put(key, entry(10))
    assert.deepEqual([cache.size, cache.bytes], [2, 20])
    assert.equal(cache.get('a', request, 0), undefined)
    cache.put('b', entry(5)) // replacing an entry releases its bytes
    assert.deepEqual([cache.size, cache.bytes], [2, 15])
  })

  it('drops expired entries when asked for them', () => {
    const cache = new StaleCache(1000)
    cache.put('a', entry(4, 500))
    assert.ok(cache.get('a', request, 1499))
    assert.equal(cache.get('a', request, 1500), undefined)
    assert.deepEqual([cache.size, cache.bytes], [0, 0])
  })

  it('stops copying a streamed body once it passes maxEntryBytes, and still delivers all of it', async () => {
    const cache = new StaleCache(60_000, { maxEntryBytes: 8, maxEntries: 10, maxTotalBytes: 100 })
    const response = cache.capture('k', request, new Response(new Blob(['12345', '67890']).stream()), () => 0)
    assert.equal(await response.text(), '1234567890')
    assert.equal(cache.size, 0)
    const declared = new Response('x'.repeat(9), { headers: { 'content-length': '9' } })
    assert.equal(cache.capture('k', request, declared, () => 0), declared, 'a declared oversize body is not even wrapped')
    assert.equal(await cache.capture('k', request, new Response('12345678'), () => 0).text(), '12345678')
    assert.equal(cache.bytes, 8)
  })
})

describe('fallback: upstream', () => {
  it('sends the request to the other upstream with a fresh signal when the route timeout has fired', async () => {
    const h = harness({ upstream: 'readonly', body: 'static' }, { timeoutMs: 5000 })
    const exchange = h.exchange()
    const timedOut = new GatewayError('upstream_timeout', 'too slow')
    h.primary(async (ex) => {
      ex.controller.abort(timedOut)
      ex.attempts = 1
      throw timedOut
    })
    const response = await h.run(exchange)
    assert.equal(await text(response), 'from readonly')
    assert.equal(response.headers.get('x-pillion-fallback'), 'upstream')
    assert.equal(response.headers.get('x-request-id'), 'req-7')
    const sent = h.seenByAlternate[0]!
    assert.equal(sent, exchange)
    assert.equal(sent.signal.aborted, true)
    assert.equal(sent.attemptSignal.aborted, false, 'the other upstream gets a signal of its own')
    assert.deepEqual(h.served, [{ route: 'api', kind: 'upstream', cause: 'upstream_timeout' }])
    exchange.finish()
  })

  it('aborts the other upstream when the client leaves', async () => {
    const clientGone = new AbortController()
    const h = harness({ upstream: 'readonly', body: 'static' })
    const exchange = new Exchange(new Request('http://gateway/x', { signal: clientGone.signal }), { remoteAddress: '127.0.0.1' }, 'id', '/x', '', 0)
    h.primary(open)
    h.alternate(async (ex) => {
      clientGone.abort()
      if (ex.attemptSignal.aborted) throw ex.attemptSignal.reason
      return new Response('sent to nobody')
    })
    await assert.rejects(h.run(exchange), (error) => error instanceof GatewayError && error.code === 'client_closed')
    assert.deepEqual(h.served, [], 'nobody was served')
  })

  it('goes on to static when the other upstream fails or answers 5xx', async () => {
    const h = harness({ upstream: 'readonly', body: 'static' })
    h.primary(open)
    h.alternate(() => Promise.reject(new GatewayError('upstream_unavailable', 'down', { failure: 'connect-failure' })))
    assert.equal(await text(await h.call()), 'static')
    const failing = feed()
    failing.push('boom')
    failing.end()
    h.alternate(async () => new Response(failing.stream, { status: 503 }))
    assert.equal(await text(await h.call()), 'static')
    assert.ok(failing.cancelled, "the other upstream's 5xx body was cancelled")
    assert.deepEqual(h.served.map((event) => event.kind), ['static', 'static'])
  })

  it('skips a request whose body stream was already sent, unless it was buffered', async () => {
    const h = harness({ upstream: 'readonly', body: 'static' })
    h.primary(async (ex) => {
      ex.attempts = 1
      throw new GatewayError('upstream_unavailable', 'reset', { failure: 'reset' })
    })
    assert.equal(await text(await h.call({ method: 'POST', body: 'payload' })), 'static')
    assert.equal(h.seenByAlternate.length, 0)
    const buffered = h.exchange({ method: 'POST', body: 'payload' })
    buffered.replayableBody = new TextEncoder().encode('payload')
    assert.equal(await text(await h.run(buffered)), 'from readonly')
    h.primary(open) // rejected before any try: the stream is untouched
    assert.equal(await text(await h.call({ method: 'POST', body: 'payload' })), 'from readonly')
  })

  it('tries stale before upstream before static', async () => {
    const h = harness({ stale: '5m', upstream: 'readonly', body: 'static' })
    await text(await h.call({ path: '/cached' }))
    h.primary(open)
    assert.equal(await text(await h.call({ path: '/cached' })), 'from primary')
    assert.equal(await text(await h.call({ path: '/other' })), 'from readonly')
    h.alternate(open)
    assert.equal(await text(await h.call({ path: '/other' })), 'static')
    assert.deepEqual(h.served.map((event) => event.kind), ['stale', 'upstream', 'static'])
  })
})



describe('fallback schema', () => {
  it('normalizes stale, upstream and the static answer, with defaults', () => {
    const config = loadConfigText(`${ONE_ROUTE}[routes.fallback]\nstale = "5m"\nupstream = "local"\nbody = '{"degraded":true}'\n`, 'p.toml')
    assert.deepEqual(config.routes[0]!.policies.fallback, {
      staleMs: 300_000,
      upstream: 'local',
      static: { status: 200, contentType: 'text/plain; charset=utf-8', body: '{"degraded":true}' },
    })
    assert.deepEqual(policyOf({ status: 503 }), { static: { status: 503, contentType: 'text/plain; charset=utf-8', body: '' } })
    assert.deepEqual(policyOf({ stale: '30s' }), { staleMs: 30_000 })
  })

  it('needs something to answer with', () => {
    assert.deepEqual(problemLines(`${ONE_ROUTE}[routes.fallback]\n`), ['routes[0].fallback: expected at least one of stale, upstream, status or body'])
    assert.deepEqual(problemLines(`${ONE_ROUTE}[routes.fallback]\nstale = "1m"\ncontent_type = "text/html"\n`), [
      'routes[0].fallback.content_type: content_type only applies to a static answer: set status or body too',
    ])
  })

  it('reports bad keys with their paths', () => {
    assert.deepEqual(
      problemLines(`${ONE_ROUTE}[routes.fallback]\nstale = "0s"\nstatus = 99\nbody = 5\nheaders = {}\nupstream = "nowhere"\n`),
      [
        'routes[0].fallback.stale: expected a duration above zero, like "200ms" or "10s", got "0s"',
        'routes[0].fallback.status: expected a whole number from 200 to 599, got 99',
        'routes[0].fallback.body: expected a string, got 5',
        'routes[0].fallback.headers: unknown key "headers" (allowed: stale, upstream, status, content_type, body)',
        'routes[0].fallback.upstream: no upstream named "nowhere" (defined: local)',
      ],
    )
    assert.deepEqual(problemLines(`${ONE_ROUTE}[routes.fallback]\nstatus = 204\nbody = "x"\n`), ['routes[0].fallback.body: a 204 answer has no body, got "x"'])
  })
})
