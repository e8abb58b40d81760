import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { loadConfigText } from '../../../../src/config/load.ts'
import { GatewayError } from '../../../../src/core/errors.ts'
import { EventBus, type GatewayEventMap } from '../../../../src/core/events.ts'
import type { RouteContext } from '../../../../src/policies/policy.ts'
import { ABSENT_KEY, bucketQuota, dryRunReporter, policyItem, rateLimitLayer, type DryRunReport } from '../../../../src/policies/rate-limit/index.ts'
import { localLimiter } from '../../../../src/policies/rate-limit/local-store.ts'
import { GlobalLimitStore, STORE_ERROR_REPORT_MS, type RateLimitStore, type StoreDecision } from '../../../../src/policies/rate-limit/global-store.ts'
import { Exchange, type Step } from '../../../../src/proxy/exchange.ts'
import { ONE_ROUTE, rejection } from '../../fakes/policy-text.ts'
import type { RateLimitPolicy, RedisSettings } from '../../../../src/policies/rate-limit/config.ts'
import { fakeGateway } from '../../fakes/security-fakes.ts'

const ROUTE_LIMITS = (entries: string) => `${ONE_ROUTE}\n${entries}\n`
const loadLimits = (entries: string, extra = '') =>
  loadConfigText(`${ROUTE_LIMITS(entries)}${extra}`, 'x.toml').routes[0]!.policies.rateLimits
const problemsOf = (text: string) => rejection(text).map((problem) => `${problem.path}: ${problem.message}`)
const REDIS = '\n[redis]\nurl = "redis://127.0.0.1:6379"\n'

describe('rate limit config', () => {
  test('off unless a route or [defaults] sets it', () => {
    assert.equal(loadConfigText(ONE_ROUTE, 'x.toml').routes[0]!.policies.rateLimits, undefined)
  })

  test('the issue example, with every default', () => {
    assert.deepEqual(loadLimits('[[routes.rate_limit]]\nrate = "100/s"\nburst = 200\nkey = "client_ip"'), [
      {
        name: 'limit-0',
        key: { from: 'client_ip' },
        algorithm: { kind: 'token_bucket', ratePerSecond: 100, burst: 200 },
        dryRun: false,
        store: 'local',
        maxKeys: 100_000,
      },
    ])
  })

  test('burst defaults to one second of the rate, rounded up, and at least 1; key to client_ip', () => {
    const [fast, slow] = loadLimits('[[routes.rate_limit]]\nrate = "2.5/s"\n[[routes.rate_limit]]\nrate = "5/h"')!
    assert.deepEqual(fast!.algorithm, { kind: 'token_bucket', ratePerSecond: 2.5, burst: 3 })
    assert.deepEqual(slow!.algorithm, { kind: 'token_bucket', ratePerSecond: 5 / 3600, burst: 1 })
    assert.deepEqual(slow!.key, { from: 'client_ip' })
    assert.equal(slow!.name, 'limit-1')
  })

  test('quotas, keys, dry run, redis store and max_keys', () => {
    const limits = loadLimits(
      `[[routes.rate_limit]]
name = "daily"
quota = { limit = 10000, per = "1d" }
key = "jwt:sub"
store = "redis"
[[routes.rate_limit]]
rate = "10/min"
key = "header:X-Api-Key"
mode = "dry_run"
max_keys = 500
[[routes.rate_limit]]
quota = { limit = 5, per = "1m30s" }
key = "route"`,
      REDIS,
    )!
    assert.deepEqual(limits[0], {
      name: 'daily',
      key: { from: 'jwt', claim: 'sub' },
      algorithm: { kind: 'fixed_window', limit: 10000, windowMs: 86_400_000 },
      dryRun: false,
      store: 'redis',
      maxKeys: 100_000,
    })
    assert.deepEqual(limits[1]!.key, { from: 'header', name: 'x-api-key' })
    assert.equal(limits[1]!.dryRun, true)
    assert.equal(limits[1]!.maxKeys, 500)
    assert.deepEqual(limits[2]!.algorithm, { kind: 'fixed_window', limit: 5, windowMs: 90_000 })
    assert.deepEqual(limits[2]!.key, { from: 'route' })
  })

  test('[defaults] takes an inline array; a route list replaces it whole; [] turns it off', () => {
    const text = `${ONE_ROUTE}
[[routes]]
name = "own"
listener = "ingress"
path = "/own/*"
upstream = "local"
[[routes.rate_limit]]
rate = "1/s"
[[routes]]
name = "none"
listener = "ingress"
path = "/none/*"
upstream = "local"
rate_limit = []

[defaults]
rate_limit = [ { rate = "100/s", key = "route" }, { quota = { limit = 9, per = "1h" } } ]
`
    const [inherited, own, none] = loadConfigText(text, 'x.toml').routes
    assert.deepEqual(inherited!.policies.rateLimits!.map((limit) => limit.name), ['limit-0', 'limit-1'])
    assert.deepEqual(own!.policies.rateLimits!.map((limit) => limit.algorithm.kind), ['token_bucket'])
    assert.deepEqual(none!.policies.rateLimits, [])
  })

  test('[redis] defaults: fail open, 50ms', () => {
    const config = loadConfigText(`${ONE_ROUTE}${REDIS}`, 'x.toml')
    assert.deepEqual(config.redis, { url: 'redis://127.0.0.1:6379', onError: 'allow', timeoutMs: 50 } satisfies RedisSettings)
    const strict = loadConfigText(`${ONE_ROUTE}\n[redis]\nurl = "rediss://u:p@redis.internal:6380/2"\non_error = "deny"\ntimeout = "20ms"\n`, 'x.toml')
    assert.deepEqual(strict.redis, { url: 'rediss://u:p@redis.internal:6380/2', onError: 'deny', timeoutMs: 20 })
  })

  test('store = "redis" without [redis] is reported at the limit, in routes and [defaults]', () => {
    const text = `${ONE_ROUTE}
[[routes.rate_limit]]
rate = "1/s"
[[routes.rate_limit]]
rate = "1/s"
store = "redis"

[defaults]
rate_limit = [ { rate = "1/s", store = "redis" } ]
`
    assert.deepEqual(problemsOf(text), [
      'defaults.rate_limit[0].store: store = "redis" needs a [redis] table (url, cluster or sentinels)',
      'routes[0].rate_limit[1].store: store = "redis" needs a [redis] table (url, cluster or sentinels)',
    ])
  })

  test('mistakes are reported at their key path', () => {
    const cases: Array<[string, string]> = [
      ['key = "client_ip"', 'routes[0].rate_limit[0]: expected rate (a token bucket) or quota (a fixed window), like rate = "100/s" or quota = { limit = 10000, per = "1d" }'],
      ['rate = "1/s"\nquota = { limit = 1, per = "1s" }', 'routes[0].rate_limit[0].quota: expected rate or quota, not both (list two limits for both)'],
      ['quota = { limit = 1, per = "1s" }\nburst = 3', 'routes[0].rate_limit[0].burst: applies to rate only (a quota has no burst)'],
      ['rate = "1/s"\nstore = "redis"\nmax_keys = 5', 'routes[0].rate_limit[0].max_keys: applies to store = "local" only (Redis expires its own keys)'],
      ['rate = "0/s"', 'routes[0].rate_limit[0].rate: expected a rate above zero, like "100/s", got "0/s"'],
      ['rate = "fast"', 'routes[0].rate_limit[0].rate: expected a rate like "100/s", "6000/min" or "5/h", got "fast"'],
      ['rate = "1/s"\nburst = 0', 'routes[0].rate_limit[0].burst: expected a whole number of at least 1, got 0'],
      ['rate = "1/s"\nkey = "cookie:x"', 'routes[0].rate_limit[0].key: expected "client_ip", "route", "header:NAME" or "jwt:CLAIM", got "cookie:x"'],
      ['rate = "1/s"\nmode = "shadow"', 'routes[0].rate_limit[0].mode: expected one of "enforce", "dry_run", got "shadow"'],
      ['quota = { limit = 1, per = "1500ms" }', 'routes[0].rate_limit[0].quota.per: expected a window of whole seconds, at least "1s", got "1500ms"'],
      ['quota = { limit = 1, per = "400d" }', 'routes[0].rate_limit[0].quota.per: expected a window of at most "366d", got "400d"'],
      ['quota = { limit = 0, per = "1d" }', 'routes[0].rate_limit[0].quota.limit: expected a whole number of at least 1, got 0'],
    ]
    for (const [entry, expected] of cases) {
      assert.deepEqual(problemsOf(ROUTE_LIMITS(`[[routes.rate_limit]]\n${entry}`) + REDIS), [expected], entry)
    }
    const [unknown] = problemsOf(ROUTE_LIMITS('[[routes.rate_limit]]\nrate = "1/s"\nlimit = 5'))
    assert.match(unknown!, /^routes\[0\]\.rate_limit\[0\]\.limit: unknown key "limit" \(allowed: name, rate, burst, quota, key, mode, store, max_keys\)$/)
  })

  test('names are unique on a route, the default ones included', () => {
    assert.deepEqual(problemsOf(ROUTE_LIMITS('[[routes.rate_limit]]\nname = "limit-1"\nrate = "1/s"\n[[routes.rate_limit]]\nrate = "2/s"')), [
      'routes[0].rate_limit[1]: duplicate rate limit name "limit-1" (also [0]); names tell limits apart in headers and Redis keys',
    ])
  })

  test('[redis] mistakes', () => {
    assert.deepEqual(problemsOf(`${ONE_ROUTE}\n[redis]\nurl = "http://127.0.0.1:6379"\ntimeout = "0s"\non_error = "retry"\n`), [
      'redis.url: expected a URL like "redis://127.0.0.1:6379" or "rediss://user:password@host:6380/0", got "http://127.0.0.1:6379"',
      'redis.on_error: expected one of "allow", "deny", got "retry"',
      'redis.timeout: expected a duration above zero, like "200ms" or "10s", got "0s"',
    ])
    assert.deepEqual(problemsOf(`${ONE_ROUTE}\n[redis]\non_error = "deny"\n`), [
      'redis: expected exactly one of url (one Redis), cluster (seed nodes of a Redis Cluster) or sentinels (with master_name)',
    ])
  })
})

describe('RateLimit-Policy items', () => {
  test('a bucket says its rate per whole window, and its burst', () => {
    assert.deepEqual(bucketQuota(100), { q: 100, w: 1 })
    assert.deepEqual(bucketQuota(5 / 3600), { q: 5, w: 3600 })
    assert.deepEqual(bucketQuota(0.5), { q: 30, w: 60 })
    assert.deepEqual(bucketQuota(7 / 86_400), { q: 7, w: 86_400 })
    assert.equal(policyItem('default', { kind: 'token_bucket', ratePerSecond: 100, burst: 200 }), '"default";q=100;w=1;pillion-burst=200')
  })

  test('a quota says its limit and window in seconds', () => {
    assert.equal(policyItem('daily', { kind: 'fixed_window', limit: 10000, windowMs: 86_400_000 }), '"daily";q=10000;w=86400')
  })
})

/** A clock the test moves by hand. */
function manualClock(start = 1_000_000) {
  const clock = { now: start, read: () => clock.now }
  return clock
}

describe('local token buckets', () => {
  test('exact at one instant: 200 takes from a 10/s bucket of 10 admit exactly 10', () => {
    const clock = manualClock()
    const buckets = localLimiter({ kind: 'token_bucket', ratePerSecond: 10, burst: 10 }, 100, clock.read)
    let admitted = 0
    for (let i = 0; i < 200; i++) if (buckets.take('client')) admitted++
    assert.equal(admitted, 10)
    assert.equal(buckets.remaining, 0)
    assert.equal(buckets.retryMs, 100)
  })

  test('refills lazily with time: one token per 100ms at 10/s, never above burst', () => {
    const clock = manualClock()
    const buckets = localLimiter({ kind: 'token_bucket', ratePerSecond: 10, burst: 2 }, 100, clock.read)
    assert.equal(buckets.take('a'), true)
    assert.equal(buckets.take('a'), true)
    assert.equal(buckets.take('a'), false)
    clock.now += 99
    assert.equal(buckets.take('a'), false)
    assert.ok(Math.abs(buckets.retryMs - 1) < 1e-9)
    clock.now += 1
    assert.equal(buckets.take('a'), true)
    assert.equal(buckets.remaining, 0)
    assert.ok(Math.abs(buckets.resetMs - 200) < 1e-9)
    clock.now += 60_000
    assert.equal(buckets.take('a'), true)
    assert.equal(buckets.remaining, 1, 'refill stops at burst')
  })

  test('keys have their own buckets; a refund gives the token back', () => {
    const clock = manualClock()
    const buckets = localLimiter({ kind: 'token_bucket', ratePerSecond: 1, burst: 1 }, 100, clock.read)
    assert.equal(buckets.take('a'), true)
    assert.equal(buckets.take('a'), false)
    assert.equal(buckets.take('b'), true)
    buckets.refund('b')
    assert.equal(buckets.take('b'), true)
    assert.equal(buckets.take('b'), false)
  })

  test('a million distinct keys never hold more than max_keys', () => {
    const clock = manualClock()
    const maxKeys = 100_000
    const buckets = localLimiter({ kind: 'token_bucket', ratePerSecond: 1, burst: 5 }, maxKeys, clock.read)
    let largest = 0
    for (let i = 0; i < 1_000_000; i++) {
      buckets.take(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:${i}`)
      if ((i & 1023) === 0) largest = Math.max(largest, buckets.size)
      clock.now += 0.001 // a flood: nobody's bucket refills in the meantime
    }
    largest = Math.max(largest, buckets.size)
    assert.equal(largest, maxKeys)
    // The least recently used went first; the newest keys are still counted.
    assert.equal(buckets.take('10.15.66.63:999999'), true)
    assert.equal(buckets.remaining, 3)
  })

  test('idle buckets (full again) are swept without new keys arriving', () => {
    const clock = manualClock()
    const buckets = localLimiter({ kind: 'token_bucket', ratePerSecond: 10, burst: 10 }, 1000, clock.read)
    for (let i = 0; i < 500; i++) buckets.take(`idle-${i}`)
    assert.equal(buckets.size, 500)
    clock.now += 50 // 0.5 tokens back: nobody is full yet
    buckets.take('busy')
    assert.equal(buckets.size, 501)
    clock.now += 1000 // everyone is full again
    buckets.take('busy')
    assert.equal(buckets.size, 1)
  })
})

describe('local fixed windows', () => {
  test('limit per window, lined up with the clock, refusals not counted', () => {
    const clock = manualClock(3_600_000 * 100 + 1_800_000) // half way through an hour
    const windows = localLimiter({ kind: 'fixed_window', limit: 3, windowMs: 3_600_000 }, 100, clock.read)
    assert.deepEqual([1, 2, 3, 4, 5].map(() => windows.take('k')), [true, true, true, false, false])
    assert.equal(windows.remaining, 0)
    assert.equal(windows.retryMs, 1_800_000)
    clock.now += 1_800_000 // the next hour
    assert.equal(windows.take('k'), true)
    assert.equal(windows.remaining, 2)
    assert.equal(windows.resetMs, 3_600_000)
  })

  test('past windows are swept; a million keys stay within max_keys', () => {
    const clock = manualClock(0)
    const windows = localLimiter({ kind: 'fixed_window', limit: 1, windowMs: 1000 }, 10_000, clock.read)
    for (let i = 0; i < 1_000_000; i++) windows.take(`k${i}`)
    assert.equal(windows.size, 10_000)
    clock.now += 1000
    windows.take('new')
    assert.equal(windows.size, 1)
  })
})

test('memory: a flood of 1,000,000 distinct keys stays within the bound', async (t) => {
  const { setFlagsFromString } = await import('node:v8')
  const { runInNewContext } = await import('node:vm')
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const clock = manualClock()
  const buckets = localLimiter({ kind: 'token_bucket', ratePerSecond: 100, burst: 200 }, 100_000, clock.read)
  gc()
  const before = process.memoryUsage().heapUsed
  for (let i = 0; i < 1_000_000; i++) buckets.take(`2001:db8::${i.toString(16)}`)
  gc()
  const grownMb = (process.memoryUsage().heapUsed - before) / 2 ** 20
  t.diagnostic(`heap grew ${grownMb.toFixed(1)} MiB for ${buckets.size} keys held`)
  assert.equal(buckets.size, 100_000)
  // ~100 bytes a key; unbounded, a million keys would take several times this.
  assert.ok(grownMb < 40, `heap grew ${grownMb.toFixed(1)} MiB`)
})

function exchange(path = '/', headers: Record<string, string> = {}, address = '10.0.0.1'): Exchange {
  return new Exchange(new Request(`http://gateway${path}`, { headers }), { remoteAddress: address }, 'req', path, '', performance.now())
}

const limit = (overrides: Partial<RateLimitPolicy>): RateLimitPolicy => ({
  name: 'limit-0',
  key: { from: 'route' },
  algorithm: { kind: 'token_bucket', ratePerSecond: 1, burst: 1 },
  dryRun: false,
  store: 'local',
  maxKeys: 1000,
  ...overrides,
})

function setup(policies: RateLimitPolicy[], store?: GlobalLimitStore) {
  const events = new EventBus()
  const decisions: Array<GatewayEventMap['rate_limit_decision']> = []
  events.on('rate_limit_decision', (event) => decisions.push(event))
  const context = { route: { name: 'orders' }, events, keep: (_k: string, _p: unknown, create: () => unknown) => create(), gateway: fakeGateway() } as unknown as RouteContext
  const clock = manualClock()
  let calls = 0
  const upstream: Step = async () => {
    calls++
    return new Response('ok')
  }
  const chain = rateLimitLayer(policies, context, store, { monotonic: clock.read, wall: clock.read })(upstream)
  const send = async (ex: Exchange) => {
    try {
      return { response: await chain(ex), error: undefined }
    } catch (error) {
      assert.ok(error instanceof GatewayError, String(error))
      return { response: undefined, error }
    }
  }
  return { send, decisions, clock, calls: () => calls, events }
}

describe('rate limit layer', () => {
  test('admits within the limit with RateLimit headers; refuses with 429, Retry-After and the same headers', async () => {
    const { send } = setup([limit({ name: 'api', algorithm: { kind: 'token_bucket', ratePerSecond: 10, burst: 2 } })])
    const first = await send(exchange())
    assert.equal(first.response!.headers.get('ratelimit-policy'), '"api";q=10;w=1;pillion-burst=2')
    assert.equal(first.response!.headers.get('ratelimit'), '"api";r=1;t=1')
    await send(exchange())
    const refused = await send(exchange())
    assert.equal(refused.error!.code, 'rate_limited')
    assert.equal(refused.error!.status, 429)
    assert.deepEqual(refused.error!.headers, {
      'retry-after': '1',
      'ratelimit-policy': '"api";q=10;w=1;pillion-burst=2',
      ratelimit: '"api";r=0;t=1',
    })
  })

  test('every limit must admit; the refused request gives back what the others took', async () => {
    const { send, calls } = setup([
      limit({ name: 'wide', algorithm: { kind: 'token_bucket', ratePerSecond: 1, burst: 3 } }),
      limit({ name: 'per-key', key: { from: 'header', name: 'x-api-key' }, algorithm: { kind: 'fixed_window', limit: 1, windowMs: 60_000 } }),
    ])
    assert.ok((await send(exchange('/', { 'x-api-key': 'a' }))).response)
    // "a" is spent; "wide" must not be charged for the refused tries.
    for (let i = 0; i < 5; i++) assert.equal((await send(exchange('/', { 'x-api-key': 'a' }))).error?.code, 'rate_limited')
    const b = await send(exchange('/', { 'x-api-key': 'b' }))
    // per-key has 0 left for "b", wide 1; the clock is at 1000 s, 20 s before the minute ends.
    assert.equal(b.response!.headers.get('ratelimit'), '"per-key";r=0;t=20')
    const c = await send(exchange('/', { 'x-api-key': 'c' }))
    assert.ok(c.response)
    assert.equal((await send(exchange('/', { 'x-api-key': 'd' }))).error?.message, 'rate limit "wide" exceeded; retry in 1s')
    assert.equal(calls(), 3)
  })

  test('the most restrictive limit is the one with the least left', async () => {
    const { send } = setup([
      limit({ name: 'minute', algorithm: { kind: 'fixed_window', limit: 100, windowMs: 60_000 } }),
      limit({ name: 'second', algorithm: { kind: 'token_bucket', ratePerSecond: 5, burst: 5 } }),
    ])
    const { response } = await send(exchange())
    assert.equal(response!.headers.get('ratelimit'), '"second";r=4;t=1')
    assert.equal(response!.headers.get('ratelimit-policy'), '"minute";q=100;w=60, "second";q=5;w=1;pillion-burst=5')
  })

  test('dry run counts and reports but lets everything through, and stays out of the headers', async () => {
    const { send, decisions, calls } = setup([limit({ name: 'trial', dryRun: true })])
    for (let i = 0; i < 3; i++) {
      const { response } = await send(exchange())
      assert.equal(response!.status, 200)
      assert.equal(response!.headers.get('ratelimit'), null)
      assert.equal(response!.headers.get('ratelimit-policy'), null)
    }
    assert.equal(calls(), 3)
    assert.deepEqual(
      decisions.map((d) => d.allowed),
      [true, false, false],
    )
    assert.deepEqual(decisions[1], { route: 'orders', limit: 'trial', allowed: false, dryRun: true })
  })

  test('keys: header values apart, absent ones share one bucket; claims; client address', async () => {
    const byHeader = setup([limit({ key: { from: 'header', name: 'x-api-key' } })])
    assert.ok((await byHeader.send(exchange('/', { 'x-api-key': 'a' }))).response)
    assert.ok((await byHeader.send(exchange('/', { 'x-api-key': 'b' }))).response)
    assert.ok((await byHeader.send(exchange('/'))).response)
    assert.ok((await byHeader.send(exchange('/', { 'x-api-key': '' }))).error, 'an empty value counts as absent')
    assert.ok((await byHeader.send(exchange('/', { 'x-api-key': ABSENT_KEY }))).error)

    const byClaim = setup([limit({ key: { from: 'jwt', claim: 'sub' } })])
    const withClaim = (sub: unknown) => Object.assign(exchange(), { claims: { sub } })
    assert.ok((await byClaim.send(withClaim('alice'))).response)
    assert.ok((await byClaim.send(withClaim('bob'))).response)
    assert.ok((await byClaim.send(withClaim('alice'))).error)
    assert.ok((await byClaim.send(exchange())).response, 'no claims: the absent bucket')
    assert.ok((await byClaim.send(withClaim({ nested: true }))).error, 'a claim that is no string or number counts as absent')

    const byAddress = setup([limit({ key: { from: 'client_ip' } })])
    assert.ok((await byAddress.send(exchange('/', {}, '::ffff:10.1.1.1'))).response)
    assert.ok((await byAddress.send(exchange('/', {}, '10.1.1.1'))).error, 'IPv4-mapped IPv6 is the same client')
    assert.ok((await byAddress.send(exchange('/', {}, '10.1.1.2'))).response)
  })

  test('long key values are hashed, and the same value still finds its bucket', async () => {
    const seen: string[] = []
    const store = fakeStore((key) => {
      seen.push(key)
      return { allowed: true, remaining: 1, resetMs: 1000, retryMs: 0 }
    })
    const { send } = setup([limit({ store: 'redis', key: { from: 'header', name: 'x-api-key' } })], store)
    const long = 'k'.repeat(10_000)
    await send(exchange('/', { 'x-api-key': long }))
    await send(exchange('/', { 'x-api-key': long }))
    await send(exchange('/', { 'x-api-key': 'short' }))
    assert.equal(seen[0], seen[1])
    assert.match(seen[0]!, /^pillion:\{svc:orders:limit-0\}:sha256:[A-Za-z0-9_-]{43}$/)
    assert.equal(seen[2], 'pillion:{svc:orders:limit-0}:short')
  })

  test('errors from below carry the admitted request\'s headers', async () => {
    const events = new EventBus()
    const context = { route: { name: 'orders' }, events, keep: (_k: string, _p: unknown, create: () => unknown) => create(), gateway: fakeGateway() } as unknown as RouteContext
    const failing: Step = async () => {
      throw new GatewayError('upstream_timeout', 'slow')
    }
    const chain = rateLimitLayer([limit({ name: 'api' })], context)(failing)
    const error = (await chain(exchange()).catch((e: unknown) => e)) as GatewayError
    assert.equal(error.code, 'upstream_timeout')
    assert.equal(error.headers!.ratelimit, '"api";r=0;t=1')
  })
})

/** A store that answers with `decide`, or never (`hang`), or fails. */
function fakeStore(decide: (key: string) => StoreDecision | 'hang' | Error, settings: Partial<RedisSettings> = {}, events = new EventBus(), now = () => 0) {
  const open = (): RateLimitStore => ({
    take: (key) => {
      const answer = decide(key)
      if (answer === 'hang') return new Promise(() => {})
      return answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer)
    },
    close: async () => {},
  })
  return new GlobalLimitStore(open, { url: 'redis://x', onError: 'allow', timeoutMs: 20, ...settings }, 'svc', events, now)
}

describe('rate limits on a shared store', () => {
  test('the store decides; its answer goes in the headers', async () => {
    const store = fakeStore(() => ({ allowed: false, remaining: 0, resetMs: 5000, retryMs: 4200 }))
    const { send } = setup([limit({ name: 'global', store: 'redis', algorithm: { kind: 'fixed_window', limit: 10, windowMs: 60_000 } })], store)
    const { error } = await send(exchange())
    assert.equal(error!.headers!['retry-after'], '5')
    assert.equal(error!.headers!.ratelimit, '"global";r=0;t=5')
  })

  test('a refusal in the store gives back the local tokens', async () => {
    let allow = false
    const store = fakeStore(() => ({ allowed: allow, remaining: 0, resetMs: 1000, retryMs: 1000 }))
    const { send } = setup([limit({ name: 'local' }), limit({ name: 'global', store: 'redis' })], store)
    assert.ok((await send(exchange())).error)
    allow = true
    assert.ok((await send(exchange())).response, 'the local token was refunded')
  })

  test('on_error = "allow": a failing or hanging store admits, without RateLimit', async () => {
    const events = new EventBus()
    const errors: Array<GatewayEventMap['redis_error']> = []
    events.on('redis_error', (e) => errors.push(e))
    let answer: 'hang' | Error = 'hang'
    const store = fakeStore(() => answer, { onError: 'allow' }, events)
    const { send } = setup([limit({ name: 'global', store: 'redis' })], store)
    const hung = await send(exchange())
    assert.equal(hung.response!.status, 200)
    assert.equal(hung.response!.headers.get('ratelimit'), null)
    answer = new Error('connect ECONNREFUSED 127.0.0.1:6379')
    assert.equal((await send(exchange())).response!.status, 200)
    assert.deepEqual(errors, [{ error: 'no answer within 20ms', failures: 1, onError: 'allow' }])
  })

  test('on_error = "deny": a failing store refuses with 429 and Retry-After: 1', async () => {
    const store = fakeStore(() => new Error('down'), { onError: 'deny' })
    const { send, calls } = setup([limit({ name: 'global', store: 'redis' })], store)
    const { error } = await send(exchange())
    assert.equal(error!.code, 'rate_limited')
    assert.equal(error!.message, 'the rate limit store is unavailable and [redis] on_error is "deny"')
    assert.deepEqual(error!.headers, { 'retry-after': '1', 'ratelimit-policy': '"global";q=1;w=1;pillion-burst=1' })
    assert.equal(calls(), 0)
  })

  test('redis_error at most once per interval, with a count; redis_recovered once', async () => {
    const events = new EventBus()
    const seen: string[] = []
    events.on('redis_error', (e) => seen.push(`error ${e.failures} ${e.error}`))
    events.on('redis_recovered', (e) => seen.push(`recovered ${e.failures}`))
    let now = 0
    let up = false
    const store = fakeStore(() => (up ? { allowed: true, remaining: 0, resetMs: 0, retryMs: 0 } : new Error('down')), {}, events, () => now)
    const algorithm = { kind: 'token_bucket', ratePerSecond: 1, burst: 1 } as const
    for (let i = 0; i < 5; i++) await store.take('k', algorithm)
    now += STORE_ERROR_REPORT_MS
    for (let i = 0; i < 3; i++) await store.take('k', algorithm)
    up = true
    await store.take('k', algorithm)
    await store.take('k', algorithm)
    assert.deepEqual(seen, ['error 1 down', 'error 5 down', 'recovered 2'])
  })

  test('keys are namespaced by service, route and limit, braces in the service removed', () => {
    const store = new GlobalLimitStore(() => ({ take: async () => assert.fail(), close: async () => {} }), { url: 'redis://x', onError: 'allow', timeoutMs: 1 }, 'a{b}c', new EventBus())
    assert.equal(store.keyPrefix('api', 'daily'), 'pillion:{a_b_c:api:daily}:')
  })
})

describe('dry run report', () => {
  test('at most one line per second per route and limit, counting the refusals in between', () => {
    const reports: DryRunReport[] = []
    let now = 0
    const listen = dryRunReporter((r) => reports.push(r), 1000, () => now)
    const refused = { route: 'r', limit: 'l', allowed: false, dryRun: true }
    listen(refused)
    listen(refused)
    listen({ ...refused, limit: 'other' })
    listen({ ...refused, allowed: true })
    listen({ ...refused, dryRun: false })
    now = 1000
    listen(refused)
    assert.deepEqual(reports, [
      { route: 'r', limit: 'l', would_reject: 1 },
      { route: 'r', limit: 'other', would_reject: 1 },
      { route: 'r', limit: 'l', would_reject: 2 },
    ])
  })
})
