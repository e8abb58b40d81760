import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, test } from 'node:test'
import { loadConfigText } from '../../../../src/config/load.ts'
import type { UpstreamClient, UpstreamRequest } from '../../../../src/core/host.ts'
import { createGateway } from '../../../../src/gateway/build.ts'
import { apiKeyLayer } from '../../../../src/policies/api-key/index.ts'
import type { RouteContext } from '../../../../src/policies/policy.ts'
import { requestHeadersLayer } from '../../../../src/policies/request-headers/index.ts'
import type { HeaderEdits } from '../../../../src/policies/shared/header-edits.ts'
import type { Exchange } from '../../../../src/proxy/exchange.ts'
import type { UpstreamRuntime } from '../../../../src/upstream/upstream.ts'
import { IN_AND_U, ONE_ROUTE, problemLines } from '../../fakes/policy-text.ts'
import { echoStep, exchangeFor, fakeContext, fakeGateway, MemoryHost } from '../../fakes/security-fakes.ts'

const upstreamNamed = (name: string) => ({ config: { name } }) as UpstreamRuntime

/** The security fakes' context, with an upstream: `${upstream}` reads its name. */
function context(route = 'orders', upstream = 'app'): RouteContext {
  return { ...fakeContext(route), upstream: upstreamNamed(upstream) }
}

const edits = (rules: Partial<HeaderEdits>): HeaderEdits => ({ set: {}, add: {}, remove: [], ...rules })

/** The exchange after the layer ran, and the headers the upstream would get (the client's, then the edits, as forward applies them). */
async function run(rules: Partial<HeaderEdits>, init: Parameters<typeof exchangeFor>[1] = {}, prepare: (exchange: Exchange) => void = () => {}) {
  const next = echoStep()
  const exchange = exchangeFor('http://gw/orders/1', init)
  prepare(exchange)
  await requestHeadersLayer(edits(rules), context())(next)(exchange)
  assert.equal(next.calls.length, 1)
  const headers = new Headers(exchange.request.headers)
  for (const [name, value, mode] of exchange.upstreamHeaderEdits ?? []) {
    if (value === null) headers.delete(name)
    else if (mode === 'append') headers.append(name, value)
    else headers.set(name, value)
  }
  return { exchange, headers }
}

const problems = (table: string) => problemLines(`${ONE_ROUTE}\n[routes.request_headers]\n${table}\n`)

describe('request_headers config', () => {
  test('names are lower-cased, values kept as written for /config; [defaults] applies unless a route has its own table', () => {
    const text = `${IN_AND_U}
[defaults.request_headers]
set = { "X-Gateway" = "pillion" }

[[routes]]
listener = "in"
path = "/a/*"
upstream = "u"

[[routes]]
listener = "in"
path = "/b/*"
upstream = "u"
request_headers = { add = { "X-Tags" = "\${route}" }, remove = ["Cookie"] }

[[routes]]
listener = "in"
path = "/c/*"
upstream = "u"
request_headers = {}
`
    const [a, b, c] = loadConfigText(text, 'x.toml').routes
    assert.deepEqual(a!.policies.requestHeaders, { set: { 'x-gateway': 'pillion' }, add: {}, remove: [] })
    assert.deepEqual(b!.policies.requestHeaders, { set: {}, add: { 'x-tags': '${route}' }, remove: ['cookie'] })
    assert.deepEqual(c!.policies.requestHeaders, { set: {}, add: {}, remove: [] }, 'an empty table turns the default off')
  })

  test('invalid, hop-by-hop and proxy-owned names are load errors with their key path', () => {
    assert.deepEqual(problems('set = { "bad name" = "x", connection = "x", "Proxy-Authorization" = "y", host = "h" }\nremove = ["content-length", "keep-alive"]'), [
      'routes[0].request_headers.set."bad name": expected an end-to-end header name like "x-user", got "bad name"',
      'routes[0].request_headers.set.connection: expected an end-to-end header name like "x-user", got "connection": a hop-by-hop header belongs to one connection and is never passed on',
      'routes[0].request_headers.set.Proxy-Authorization: expected an end-to-end header name like "x-user", got "Proxy-Authorization": a hop-by-hop header belongs to one connection and is never passed on',
      'routes[0].request_headers.set.host: expected an end-to-end header name like "x-user", got "host": the upstream sees the Host of its endpoint URL',
      `routes[0].request_headers.remove[0]: expected an end-to-end header name like "x-user", got "content-length": the body's length is the runtime's to frame`,
      'routes[0].request_headers.remove[1]: expected an end-to-end header name like "x-user", got "keep-alive": a hop-by-hop header belongs to one connection and is never passed on',
    ])
    for (const name of ['te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-connection']) {
      assert.match(problems(`add = { "${name}" = "x" }`)[0]!, /hop-by-hop/, name)
    }
  })

  test('values: unknown variables, unclosed ones, bad names inside, CR/LF, non-ASCII and empty values', () => {
    assert.deepEqual(
      problems(
        'set = { "x-a" = "${nope}", "x-b" = "id ${client_ip", "x-c" = "${header.a b}", "x-d" = "${jwt.a..b}", "x-e" = "a\\r\\nb", "x-f" = "café", "x-g" = "", "x-h" = 3 }',
      ),
      [
        'routes[0].request_headers.set.x-a: unknown variable ${nope}; expected one of ${client_ip}, ${request_id}, ${route}, ${upstream}, ${consumer}, ${method}, ${path}, ${jwt.CLAIM}, ${header.NAME} (write $${ for a literal ${)',
        'routes[0].request_headers.set.x-b: "${" at character 4 is not closed by "}" (write $${ for a literal ${)',
        'routes[0].request_headers.set.x-c: ${header.a b}: expected a header name like ${header.x-tenant} after "header."',
        'routes[0].request_headers.set.x-d: ${jwt.a..b}: expected a claim name or a dotted path like ${jwt.realm_access.roles} after "jwt."',
        'routes[0].request_headers.set.x-e: expected a header value on one line (no CR or LF), got "a\\r\\nb"',
        'routes[0].request_headers.set.x-f: expected a header value of printable ASCII, got "café"',
        'routes[0].request_headers.set.x-g: expected a non-empty header value, got ""; to remove a header, list it in remove',
        'routes[0].request_headers.set.x-h: expected a header value (a string), got 3',
      ],
    )
  })

  test('the same name twice in set or add, in another case, is a load error; unknown keys too', () => {
    assert.deepEqual(problems('set = { "X-User" = "a", "x-user" = "b" }\nadd = { "x-t" = "1", "X-T" = "2" }'), [
      'routes[0].request_headers.set.x-user: "x-user" is also given as "X-User"; header names ignore case, so one of the two values would be lost',
      'routes[0].request_headers.add.X-T: "X-T" is also given as "x-t"; header names ignore case, so one of the two values would be lost',
    ])
    assert.deepEqual(problems('append = { "x-a" = "b" }'), ['routes[0].request_headers.append: unknown key "append" (allowed: set, add, remove)'])
    assert.deepEqual(problemLines(`${ONE_ROUTE}\nrequest_headers = "x-a"\n`), ['routes[0].request_headers: expected a table, got "x-a"'])
  })
})

describe('request_headers layer', () => {
  test("set replaces the client's header, add keeps it, remove drops it: removes first, then sets, then adds", async () => {
    const { headers, exchange } = await run(
      { set: { 'x-user': 'svc', 'x-both': 'one' }, add: { 'x-tags': 'gw', 'x-both': 'two' }, remove: ['cookie', 'x-both'] },
      { headers: { 'x-user': 'mallory', 'x-tags': 'client', cookie: 'a=1', 'x-both': 'client' } },
    )
    assert.equal(headers.get('x-user'), 'svc')
    assert.equal(headers.get('x-tags'), 'client, gw')
    assert.equal(headers.get('cookie'), null)
    assert.equal(headers.get('x-both'), 'one, two')
    assert.deepEqual(exchange.upstreamHeaderEdits, [
      ['cookie', null],
      ['x-both', null],
      ['x-user', 'svc'],
      ['x-both', 'one'],
      ['x-tags', 'gw', 'append'],
      ['x-both', 'two', 'append'],
    ])
  })

  test('constant edits are made once at load and pushed as they are', async () => {
    const layer = requestHeadersLayer(edits({ set: { 'x-a': 'b' } }), context())(echoStep())
    const first = exchangeFor('http://gw/')
    const second = exchangeFor('http://gw/')
    await layer(first)
    await layer(second)
    assert.equal(first.upstreamHeaderEdits![0], second.upstreamHeaderEdits![0])
  })

  test('${client_ip}, ${request_id}, ${route} and ${upstream}', async () => {
    const { headers } = await run(
      { set: { 'x-client': '${client_ip}', 'x-id': 'id=${request_id}', 'x-where': '${route} -> ${upstream}' } },
      { remoteAddress: '203.0.113.9' },
    )
    assert.equal(headers.get('x-client'), '203.0.113.9')
    assert.equal(headers.get('x-id'), 'id=req-1')
    assert.equal(headers.get('x-where'), 'orders -> app')
  })

  test('${upstream} is the one a split chose (exchange.target), else the route’s', async () => {
    const { headers } = await run({ set: { 'x-upstream': '${upstream}' } }, {}, (exchange) => (exchange.target = upstreamNamed('canary')))
    assert.equal(headers.get('x-upstream'), 'canary')
  })

  test('${jwt.CLAIM}: top level, nested by dotted path, a name with dots, arrays as JSON, escaped, empty when absent', async () => {
    const claims = {
      sub: 'alice',
      realm_access: { roles: ['admin', 'ops'] },
      'https://example.com/tenant': 'acme',
      name: 'Zoë\r\nx-evil: 1',
      level: 3,
    }
    const { headers } = await run(
      {
        set: {
          'x-user': '${jwt.sub}',
          'x-roles': '${jwt.realm_access.roles}',
          'x-tenant': '${jwt.https://example.com/tenant}',
          'x-name': '${jwt.name}',
          'x-level': 'L${jwt.level}',
          'x-missing': '${jwt.email}',
          'x-deep-missing': '${jwt.realm_access.groups}',
          'x-proto': '${jwt.constructor}',
        },
        add: { 'x-also': '${jwt.email}' },
      },
      { headers: { 'x-missing': 'spoofed', 'x-deep-missing': 'spoofed', 'x-also': 'client' } },
      (exchange) => (exchange.claims = claims),
    )
    assert.equal(headers.get('x-user'), 'alice')
    assert.equal(headers.get('x-roles'), '["admin","ops"]')
    assert.equal(headers.get('x-tenant'), 'acme')
    assert.equal(headers.get('x-name'), 'Zo%C3%AB%0D%0Ax-evil%3A%201')
    assert.equal(headers.get('x-level'), 'L3')
    assert.equal(headers.get('x-missing'), null, 'an empty set removes what the client sent')
    assert.equal(headers.get('x-deep-missing'), null)
    assert.equal(headers.get('x-proto'), null, 'only the token’s own claims')
    assert.equal(headers.get('x-also'), 'client', 'an empty add adds nothing')
  })

  test('${jwt.CLAIM} without a token (no jwt policy on the route) is empty', async () => {
    const { headers } = await run({ set: { 'x-user': 'user=${jwt.sub}' } })
    assert.equal(headers.get('x-user'), 'user=')
  })

  test('a lone surrogate in a claim is escaped, not thrown on', async () => {
    const { headers } = await run({ set: { 'x-user': '${jwt.sub}' } }, {}, (exchange) => (exchange.claims = { sub: 'a\ud800b' }))
    assert.equal(headers.get('x-user'), 'a%EF%BF%BDb')
  })

  test('${header.NAME} is the client’s header, escaped when not printable ASCII; ${consumer} the api_key consumer', async () => {
    const { headers } = await run(
      { set: { 'x-copy': '${header.X-Tenant}', 'x-none': '${header.x-absent}', 'x-who': '${consumer}', 'x-ua': '${header.user-agent}' } },
      { headers: { 'x-tenant': 'acme', 'user-agent': 'b\u00e9ta' } },
      (exchange) => (exchange.consumer = 'billing'),
    )
    assert.equal(headers.get('x-copy'), 'acme')
    assert.equal(headers.get('x-none'), null)
    assert.equal(headers.get('x-who'), 'billing')
    assert.equal(headers.get('x-ua'), 'b%C3%A9ta')
  })

  test('$${ is a literal ${; a lone $ stays', async () => {
    const { headers } = await run({ set: { 'x-a': '$${route} is ${route}', 'x-b': 'cost: $5, $$${route}' } })
    assert.equal(headers.get('x-a'), '${route} is orders')
    assert.equal(headers.get('x-b'), 'cost: $5, $${route}')
  })

  test('api_key records the consumer on the exchange for ${consumer}', async () => {
    const host = new MemoryHost()
    host.files.set('/keys.json', JSON.stringify({ [createHash('sha256').update('k1').digest('hex')]: 'billing' }))
    const route = { ...fakeContext('r', fakeGateway(host)), upstream: upstreamNamed('app') }
    const apiKey = apiKeyLayer({ header: 'x-api-key', keysFile: '/keys.json', consumerHeader: 'x-consumer', forwardKey: false }, route)
    const next = echoStep()
    const step = apiKey(requestHeadersLayer(edits({ set: { 'x-caller': 'consumer=${consumer}' } }), route)(next))
    await step(exchangeFor('http://gw/', { headers: { 'x-api-key': 'k1' } }))
    assert.equal(next.calls[0]!.consumer, 'billing')
    assert.deepEqual(next.calls[0]!.upstreamHeaderEdits?.at(-1), ['x-caller', 'consumer=billing'])
  })
})

describe('request_headers in a gateway, in process', () => {
  /** A gateway on the policy text whose upstream client records what it was sent and answers 200. */
  function gateway(routes: string) {
    const sent: UpstreamRequest[] = []
    const send: UpstreamClient = async (request) => {
      sent.push(request)
      return { status: 200, statusText: 'OK', headers: new Headers({ 'content-length': '2' }), body: new TextEncoder().encode('ok') }
    }
    const runtime = { upstream: send, resolveDns: async () => [], readTextFile: async () => '', watchFile: () => () => {} }
    const text = `${IN_AND_U}[upstreams.canary]\nendpoints = ["http://127.0.0.1:2"]\n[upstreams.shadow]\nendpoints = ["http://127.0.0.1:3"]\n${routes}`
    const { app } = createGateway(loadConfigText(text, 'x.toml'), runtime, { log() {} }).listeners[0]!
    const fetch = (headers: Record<string, string> = {}) => app.fetch(new Request('http://gw.local/x', { headers }), { remoteAddress: '198.51.100.7' })
    return { sent, fetch }
  }

  test("the forwarder applies the edits after the proxy's own headers: add appends to Via and X-Forwarded-For", async () => {
    const { sent, fetch } = await gateway(`
[[routes]]
listener = "in"
path = "/*"
upstream = "u"
request_headers = { add = { via = "1.1 mesh", "x-forwarded-for" = "10.9.9.9" }, set = { "x-route" = "\${route}" } }
`)
    assert.equal((await fetch({ via: '1.0 edge' })).status, 200)
    const headers = sent[0]!.headers
    assert.equal(headers.get('via'), '1.0 edge, 1.1 pillion, 1.1 mesh')
    assert.equal(headers.get('x-forwarded-for'), '198.51.100.7, 10.9.9.9')
    assert.equal(headers.get('x-route'), 'route-0')
  })

  test('after split, so ${upstream} is the chosen one; before mirror, so the shadow copy gets the same headers', async () => {
    const { sent, fetch } = await gateway(`
[[routes]]
listener = "in"
path = "/*"
mirror = { upstream = "shadow" }
request_headers = { set = { "x-upstream" = "\${upstream}" } }
[[routes.split]]
upstream = "u"
weight = 0
[[routes.split]]
upstream = "canary"
weight = 1
`)
    assert.equal((await fetch()).status, 200)
    for (let i = 0; i < 50 && sent.length < 2; i++) await new Promise((resolve) => setTimeout(resolve, 1))
    const byUrl = new Map(sent.map((request) => [new URL(request.url).port, request.headers]))
    assert.equal(byUrl.get('2')?.get('x-upstream'), 'canary')
    assert.equal(byUrl.get('3')?.get('x-upstream'), 'canary', 'the shadow copy carries the edits made before mirror')
    assert.equal(byUrl.get('3')?.get('x-pillion-shadow'), '1')
  })
})
