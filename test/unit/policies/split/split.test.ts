import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { loadConfigText } from '../../../../src/config/load.ts'
import { EventBus } from '../../../../src/core/events.ts'
import { buildRouteChain } from '../../../../src/gateway/pipeline.ts'
import type { RouteContext } from '../../../../src/policies/policy.ts'
import { cookieValue, splitLayer, stickyHash } from '../../../../src/policies/split/index.ts'
import { Exchange } from '../../../../src/proxy/exchange.ts'
import type { UpstreamRuntime } from '../../../../src/upstream/upstream.ts'
import { StateCarrier } from '../../../../src/core/state-carrier.ts'
import { problemLines } from '../../fakes/policy-text.ts'
import type { SplitPolicy } from '../../../../src/policies/split/index.ts'
import { fakeGateway } from '../../fakes/security-fakes.ts'

const TWO_VERSIONS = `
[gateway]
service = "orders"

[listeners.ingress]
listen = "127.0.0.1:8080"
direction = "ingress"

[upstreams.orders-v1]
endpoints = ["http://127.0.0.1:3000"]

[upstreams.orders-v2]
endpoints = ["http://127.0.0.1:3001"]
`

const SPLIT_90_10 = `
[[routes.split]]
upstream = "orders-v1"
weight = 90
[[routes.split]]
upstream = "orders-v2"
weight = 10
`

function route(lines: string): string {
  return `${TWO_VERSIONS}
[[routes]]
name = "orders"
listener = "ingress"
path = "/*"
${lines}`
}

const load = (text: string) => loadConfigText(text, 'pillion.toml').routes[0]!

describe('split config', () => {
  it('the issue example: weights in file order, upstream defaults to the first entry', () => {
    const loaded = load(route(SPLIT_90_10))
    assert.deepEqual(loaded.split, {
      backends: [
        { upstream: 'orders-v1', weight: 90 },
        { upstream: 'orders-v2', weight: 10 },
      ],
    })
    assert.equal(loaded.upstream, 'orders-v1')
  })

  it('sticky keys: header (lower-cased), cookie (as written), client_ip', () => {
    assert.deepEqual(load(route(`sticky = "header:X-User"\n${SPLIT_90_10}`)).split?.sticky, { kind: 'header', name: 'x-user' })
    assert.deepEqual(load(route(`sticky = "cookie:Session"\n${SPLIT_90_10}`)).split?.sticky, { kind: 'cookie', name: 'Session' })
    assert.deepEqual(load(route(`sticky = "client_ip"\n${SPLIT_90_10}`)).split?.sticky, { kind: 'client_ip' })
  })

  it('a route has upstream or split, not both and not neither', () => {
    assert.deepEqual(problemLines(route('upstream = "orders-v1"\n' + SPLIT_90_10)), ['routes[0].split: expected upstream or split, not both'])
    assert.deepEqual(problemLines(route('')), ['routes[0].upstream: required key missing'])
  })

  it('sticky needs a split, and a known form', () => {
    assert.deepEqual(problemLines(route('upstream = "orders-v1"\nsticky = "header:x-user"')), [
      'routes[0].sticky: applies to split routes only (add [[routes.split]] entries)',
    ])
    assert.deepEqual(problemLines(route(`sticky = "query:user"\n${SPLIT_90_10}`)), [
      'routes[0].sticky: expected "header:NAME", "cookie:NAME" or "client_ip", got "query:user"',
    ])
  })

  it('refuses unknown upstreams, repeated upstreams, negative and all-zero weights', () => {
    assert.deepEqual(problemLines(route('[[routes.split]]\nupstream = "orders-v3"\nweight = 1')), [
      'routes[0].split[0].upstream: no upstream named "orders-v3" (defined: orders-v1, orders-v2)',
    ])
    const twice = '[[routes.split]]\nupstream = "orders-v1"\nweight = 1\n[[routes.split]]\nupstream = "orders-v1"\nweight = 2'
    assert.deepEqual(problemLines(route(twice)), [
      'routes[0].split[1]: upstream "orders-v1" is listed twice; give it one entry with the sum of the weights',
    ])
    assert.deepEqual(problemLines(route('[[routes.split]]\nupstream = "orders-v1"\nweight = -1\n[[routes.split]]\nupstream = "orders-v2"\nweight = 1')), [
      'routes[0].split[0].weight: expected a whole number of at least 0, got -1',
    ])
    assert.deepEqual(problemLines(route('[[routes.split]]\nupstream = "orders-v1"\nweight = 0')), [
      'routes[0].split: expected at least one weight above 0 (all are 0, so no upstream would ever be chosen)',
    ])
  })
})

/** A fake upstream per name; the split layer only compares identities. */
function upstreams(...names: string[]): Map<string, UpstreamRuntime> {
  return new Map(names.map((name) => [name, { config: { name } } as UpstreamRuntime]))
}

function harness(policy: SplitPolicy, random: () => number = Math.random) {
  const all = upstreams('v1', 'v2', 'v3')
  const context = {
    route: { name: 'orders', timeoutMs: 0 },
    upstream: all.get('v1')!,
    upstreams: all,
    events: new EventBus(),
    gateway: fakeGateway(),
    forwardTo: () => assert.fail('the split layer never forwards itself'),
    keep: (_kind, _policy, create) => create(),
    now: () => 0,
    random,
  } satisfies RouteContext
  const step = splitLayer(policy, context)(async (exchange) => new Response(exchange.target?.config.name ?? 'none'))
  return async (headers: Record<string, string> = {}, remoteAddress = '127.0.0.1'): Promise<string> => {
    const request = new Request('http://gateway/orders', { headers })
    return (await step(new Exchange(request, { remoteAddress }, 'id', '/orders', '', 0))).text()
  }
}

const NINETY_TEN: SplitPolicy = {
  backends: [
    { upstream: 'v1', weight: 90 },
    { upstream: 'v2', weight: 10 },
  ],
}

describe('split layer', () => {
  it('without sticky, a random point picks the slice it falls in', async () => {
    let point = 0
    const call = harness(NINETY_TEN, () => point)
    for (const [at, expected] of [[0, 'v1'], [0.8999, 'v1'], [0.9, 'v2'], [0.99999, 'v2']] as const) {
      point = at
      assert.equal(await call(), expected, `point ${at}`)
    }
  })

  it('an upstream of weight 0 is never chosen', async () => {
    const call = harness({ backends: [{ upstream: 'v1', weight: 0 }, { upstream: 'v2', weight: 1 }] }, () => 0)
    assert.equal(await call(), 'v2')
  })

  it('10,000 users split 90/10 within five standard deviations, each user always on one version', async () => {
    const call = harness({ ...NINETY_TEN, sticky: { kind: 'header', name: 'x-user' } }, () => assert.fail('no random draw when the key is there'))
    const n = 10_000
    let v2 = 0
    for (let user = 0; user < n; user++) {
      const first = await call({ 'x-user': `user-${user}` })
      if (first === 'v2') v2++
      assert.equal(await call({ 'x-user': `user-${user}` }), first, `user-${user} stays`)
    }
    const sigma = Math.sqrt(n * 0.1 * 0.9)
    assert.ok(Math.abs(v2 - n * 0.1) < 5 * sigma, `v2 got ${v2} of ${n} users`)
  })

  it('sticky by cookie and by client address', async () => {
    const byCookie = harness({ ...NINETY_TEN, sticky: { kind: 'cookie', name: 'sid' } }, () => assert.fail('no random draw'))
    const byAddress = harness({ ...NINETY_TEN, sticky: { kind: 'client_ip' } }, () => assert.fail('no random draw'))
    const seen = new Set<string>()
    for (let i = 0; i < 200; i++) {
      const cookie = `theme=dark; sid=s${i}; lang=en`
      const version = await byCookie({ cookie })
      assert.equal(await byCookie({ cookie: `sid=s${i}` }), version)
      const address = `10.0.${i >> 8}.${i & 255}`
      assert.equal(await byAddress({}, address), await byAddress({}, address))
      seen.add(version)
    }
    assert.deepEqual([...seen].sort(), ['v1', 'v2'], 'both versions get users')
  })

  it('a request without the sticky key falls back to a weighted random pick', async () => {
    let draws = 0
    const call = harness({ ...NINETY_TEN, sticky: { kind: 'header', name: 'x-user' } }, () => {
      draws++
      return 0.95
    })
    assert.equal(await call(), 'v2')
    assert.equal(await call({ cookie: 'x-user=a' }), 'v2')
    assert.equal(await call({ 'x-user': '' }), 'v2', 'an empty value is no key')
    assert.equal(draws, 3)
  })

  it('a canary ramp only moves users toward the canary', async () => {
    const sticky = { kind: 'header', name: 'x-user' } as const
    const at10 = harness({ backends: [{ upstream: 'v1', weight: 90 }, { upstream: 'v2', weight: 10 }], sticky })
    const at20 = harness({ backends: [{ upstream: 'v1', weight: 80 }, { upstream: 'v2', weight: 20 }], sticky })
    let moved = 0
    for (let user = 0; user < 2000; user++) {
      const headers = { 'x-user': `u${user}` }
      const before = await at10(headers)
      const after = await at20(headers)
      if (before === 'v2') assert.equal(after, 'v2', `u${user} was on the canary and stays`)
      if (before !== after) moved++
    }
    assert.ok(moved > 0, 'some users moved to the canary')
  })

  it('three versions by weight', async () => {
    const call = harness({ backends: [{ upstream: 'v1', weight: 1 }, { upstream: 'v2', weight: 1 }, { upstream: 'v3', weight: 2 }] })
    const counts = new Map<string, number>()
    for (let i = 0; i < 4000; i++) {
      const version = await call()
      counts.set(version, (counts.get(version) ?? 0) + 1)
    }
    // Binomial, n = 4000: sigma is 27 for p = 1/4 and 32 for p = 1/2.
    assert.ok(Math.abs(counts.get('v1')! - 1000) < 5 * 27, `v1 ${counts.get('v1')}`)
    assert.ok(Math.abs(counts.get('v3')! - 2000) < 5 * 32, `v3 ${counts.get('v3')}`)
  })
})

describe('sticky hashing', () => {
  it('is FNV-1a with the murmur3 finalizer, as an independent BigInt spelling computes it', () => {
    // FNV-1a 32 of "" is its offset basis; the finalizer then mixes it.
    assert.equal(stickyHash('user-1'), stickyHash('user-1'))
    assert.notEqual(stickyHash('user-1'), stickyHash('user-2'))
    assert.deepEqual([stickyHash(''), stickyHash('a'), stickyHash('user-42')], GOLDEN)
  })

  it('spreads similar keys over the whole range', () => {
    const buckets = new Array<number>(10).fill(0)
    for (let i = 0; i < 10_000; i++) buckets[Math.floor((stickyHash(`user-${i}`) / 2 ** 32) * 10)]!++
    for (const count of buckets) assert.ok(Math.abs(count - 1000) < 5 * 30, `bucket holds ${count}`)
  })

  it('reads one cookie out of a Cookie header', () => {
    assert.equal(cookieValue('a=1; sid=xyz; b=2', 'sid'), 'xyz')
    assert.equal(cookieValue('xsid=1; sid=2', 'sid'), '2')
    assert.equal(cookieValue('a=1', 'sid'), undefined)
    assert.equal(cookieValue(null, 'sid'), undefined)
  })
})

const GOLDEN = [stickyHashOf(''), stickyHashOf('a'), stickyHashOf('user-42')]

/** An independent spelling of FNV-1a + murmur3 fmix32, with BigInt arithmetic, to pin the hash down. */
function stickyHashOf(key: string): number {
  const mask = 0xffffffffn
  let hash = 0x811c9dc5n
  for (let i = 0; i < key.length; i++) {
    hash ^= BigInt(key.charCodeAt(i))
    hash = (hash * 0x01000193n) & mask
  }
  hash ^= hash >> 16n
  hash = (hash * 0x85ebca6bn) & mask
  hash ^= hash >> 13n
  hash = (hash * 0xc2b2ae35n) & mask
  hash ^= hash >> 16n
  return Number(hash)
}

describe('a split route in the pipeline', () => {
  it('forwards to the chosen upstream, with one breaker per route and upstream', async () => {
    const config = loadConfigText(
      route(`sticky = "header:x-user"\n${SPLIT_90_10}\n[routes.circuit_breaker]\nwindow_requests = 5\nmin_requests = 5\n`),
      'pillion.toml',
    )
    const sent: string[] = []
    const send = async ({ url }: { url: string }) => {
      sent.push(new URL(url).port)
      return new Response('ok')
    }
    const all = new Map<string, UpstreamRuntime>()
    for (const upstream of Object.values(config.upstreams)) {
      const endpoint = { url: upstream.endpoints[0]!.url, active: 0 }
      all.set(upstream.name, { config: upstream, pick: () => endpoint, report: () => {} } as unknown as UpstreamRuntime)
    }
    const gateway = fakeGateway()
    const carrier = new StateCarrier()
    const chain = buildRouteChain(config.routes[0]!, { carrier, send, events: new EventBus(), upstreams: all, gateway })
    const ports = new Map<string, string>()
    for (let user = 0; user < 200; user++) {
      const request = new Request('http://gateway/x', { headers: { 'x-user': `u${user}` } })
      const exchange = new Exchange(request, { remoteAddress: '127.0.0.1' }, 'id', '/x', '', 0)
      await (await chain(exchange)).text()
      ports.set(exchange.upstream!, sent.at(-1)!)
    }
    assert.deepEqual(Object.fromEntries(ports), { 'orders-v1': '3000', 'orders-v2': '3001' })
    assert.deepEqual([...gateway.states.of('circuit_breaker').keys()].sort(), ['orders/orders-v1', 'orders/orders-v2'])
  })
})
