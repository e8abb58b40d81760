import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { loadConfigText } from '../../../../src/config/load.ts'
import { GatewayError } from '../../../../src/core/errors.ts'
import type { UpstreamClient } from '../../../../src/core/host.ts'
import { createGateway } from '../../../../src/gateway/build.ts'
import type { RouteContext } from '../../../../src/policies/policy.ts'
import { responseHeadersLayer } from '../../../../src/policies/response-headers/index.ts'
import type { HeaderEdits } from '../../../../src/policies/shared/header-edits.ts'
import type { Step } from '../../../../src/proxy/exchange.ts'
import type { UpstreamRuntime } from '../../../../src/upstream/upstream.ts'
import { IN_AND_U, ONE_ROUTE, problemLines } from '../../fakes/policy-text.ts'
import { exchangeFor, fakeContext } from '../../fakes/security-fakes.ts'

const upstreamNamed = (name: string) => ({ config: { name } }) as UpstreamRuntime

function context(route = 'orders', upstream = 'app'): RouteContext {
  return { ...fakeContext(route), upstream: upstreamNamed(upstream) }
}

const edits = (rules: Partial<HeaderEdits>): HeaderEdits => ({ set: {}, add: {}, remove: [], ...rules })

const answer: Step = async () =>
  new Response('ok', { headers: { server: 'gunicorn/21', 'cache-control': 'max-age=60', vary: 'accept-encoding', 'content-type': 'text/plain' } })

const failing =
  (error: unknown): Step =>
  async () => {
    throw error
  }

describe('response_headers config', () => {
  test('the same table as request_headers, with its key paths', () => {
    const config = loadConfigText(`${ONE_ROUTE}\n[routes.response_headers]\nset = { "Cache-Control" = "no-store" }\nremove = ["Server"]\n`, 'x.toml')
    assert.deepEqual(config.routes[0]!.policies.responseHeaders, { set: { 'cache-control': 'no-store' }, add: {}, remove: ['server'] })
    assert.deepEqual(problemLines(`${ONE_ROUTE}\n[routes.response_headers]\nset = 4\nadd = { "transfer-encoding" = "chunked", "x-by" = "\${who}" }\n`), [
      'routes[0].response_headers.set: expected a table like { "cache-control" = "no-store" }, got 4',
      'routes[0].response_headers.add.transfer-encoding: expected an end-to-end header name like "x-user", got "transfer-encoding": a hop-by-hop header belongs to one connection and is never passed on',
      'routes[0].response_headers.add.x-by: unknown variable ${who}; expected one of ${client_ip}, ${request_id}, ${route}, ${upstream}, ${consumer}, ${method}, ${path}, ${jwt.CLAIM}, ${header.NAME} (write $${ for a literal ${)',
    ])
    assert.match(problemLines(`${ONE_ROUTE}\n[defaults.response_headers]\nset = { "x-a" = "a\\nb" }\n`)[0]!, /^defaults\.response_headers\.set\.x-a: expected a header value on one line/)
  })
})

describe('response_headers layer', () => {
  test("set replaces the upstream's header, add keeps it, remove drops it; the same Response comes back", async () => {
    let made: Response | undefined
    const step: Step = async (exchange) => (made = await answer(exchange))
    const response = await responseHeadersLayer(
      edits({ set: { 'cache-control': 'no-store', 'x-served-by': '${route}' }, add: { vary: 'origin' }, remove: ['server'] }),
      context(),
    )(step)(exchangeFor('http://gw/x'))
    assert.equal(response, made, 'edited in place')
    assert.equal(response.headers.get('cache-control'), 'no-store')
    assert.equal(response.headers.get('x-served-by'), 'orders')
    assert.equal(response.headers.get('vary'), 'accept-encoding, origin')
    assert.equal(response.headers.get('server'), null)
    assert.equal(await response.text(), 'ok')
  })

  test('values are read once the chain has run: ${upstream} is the one a split chose; an empty set removes', async () => {
    const step: Step = async (exchange) => {
      exchange.target = upstreamNamed('canary')
      exchange.claims = { sub: 'alice' }
      return answer(exchange)
    }
    const response = await responseHeadersLayer(
      edits({ set: { 'x-upstream': '${upstream}', 'x-user': '${jwt.sub}', 'cache-control': '${jwt.missing}' }, add: { 'x-none': '${consumer}' } }),
      context(),
    )(step)(exchangeFor('http://gw/x', { headers: { 'x-trace': 't1' } }))
    assert.equal(response.headers.get('x-upstream'), 'canary')
    assert.equal(response.headers.get('x-user'), 'alice')
    assert.equal(response.headers.get('cache-control'), null)
    assert.equal(response.headers.has('x-none'), false)
  })

  test('an answer with immutable headers is copied with the edits', async () => {
    const immutable = Response.redirect('https://app.example/next', 302)
    const response = await responseHeadersLayer(edits({ set: { 'x-a': '1' }, add: { 'x-b': '${header.x-trace}' } }), context())(async () => immutable)(
      exchangeFor('http://gw/x', { headers: { 'x-trace': 't1' } }),
    )
    assert.notEqual(response, immutable)
    assert.equal(response.status, 302)
    assert.equal(response.headers.get('location'), 'https://app.example/next')
    assert.equal(response.headers.get('x-a'), '1')
    assert.equal(response.headers.get('x-b'), 't1')
  })

  test("a gateway error carries the edits in its headers, beside its own; others pass untouched", async () => {
    const layer = responseHeadersLayer(
      edits({ set: { 'cache-control': 'no-store', 'x-id': '${request_id}' }, add: { link: '</help>; rel="help"', 'x-new': 'n' }, remove: ['www-authenticate'] }),
      context(),
    )
    const unavailable = new GatewayError('circuit_open', 'open')
    unavailable.headers = { 'retry-after': '3', link: '</status>; rel="status"', 'www-authenticate': 'Bearer' }
    const error = await layer(failing(unavailable))(exchangeFor('http://gw/x')).catch((e: unknown) => e)
    assert.equal(error, unavailable)
    assert.deepEqual(unavailable.headers, {
      'retry-after': '3',
      link: '</status>; rel="status", </help>; rel="help"',
      'cache-control': 'no-store',
      'x-id': 'req-1',
      'x-new': 'n',
    })
    const bare = new GatewayError('upstream_unavailable', 'refused')
    await assert.rejects(layer(failing(bare))(exchangeFor('http://gw/x')))
    assert.deepEqual(bare.headers, { 'cache-control': 'no-store', 'x-id': 'req-1', link: '</help>; rel="help"', 'x-new': 'n' })
    const bug = new TypeError('a bug')
    assert.equal(await layer(failing(bug))(exchangeFor('http://gw/x')).catch((e: unknown) => e), bug)
  })
})

describe('response_headers in a gateway, in process', () => {
  function gateway(route: string, send: UpstreamClient) {
    const runtime = { upstream: send, resolveDns: async () => [], readTextFile: async () => '', watchFile: () => () => {} }
    const text = `${IN_AND_U}[[routes]]\nlistener = "in"\npath = "/*"\nupstream = "u"\n${route}`
    const { app } = createGateway(loadConfigText(text, 'x.toml'), runtime, { log() {} }).listeners[0]!
    return (headers: Record<string, string> = {}) => app.fetch(new Request('http://gw.local/x', { headers }), { remoteAddress: '127.0.0.1' })
  }
  const ok: UpstreamClient = async () => ({
    status: 200,
    statusText: 'OK',
    headers: new Headers({ 'content-length': '2', server: 'gunicorn/21', 'x-frame-options': 'SAMEORIGIN' }),
    body: new TextEncoder().encode('ok'),
  })

  test("the gateway's own error answer (502, the upstream refused) carries the rules", async () => {
    const fetch = gateway('response_headers = { set = { "cache-control" = "no-store", "x-route" = "${route}" } }', async () => {
      throw new Error('connection refused')
    })
    const response = await fetch()
    assert.equal(response.status, 502)
    assert.equal(response.headers.get('x-pillion-error'), 'upstream_unavailable')
    assert.equal(response.headers.get('cache-control'), 'no-store')
    assert.equal(response.headers.get('x-route'), 'route-0')
    assert.equal((await response.json()).code, 'upstream_unavailable')
  })

  test('an error from a policy inside it (ip, 403) carries them too', async () => {
    const fetch = gateway('ip = { allow = ["10.0.0.0/8"] }\nresponse_headers = { add = { "x-gw" = "pillion" } }', ok)
    const response = await fetch()
    assert.equal(response.status, 403)
    assert.equal(response.headers.get('x-gw'), 'pillion')
  })

  test('inside strip_response_headers, secure_headers and cors: they keep the last word on their own headers', async () => {
    const fetch = gateway(
      `strip_response_headers = ["server"]
secure_headers = true
cors = { origins = ["https://app.example"] }
response_headers = { set = { server = "pillion", "x-frame-options" = "DENY", vary = "accept" }, remove = ["x-content-type-options"] }`,
      ok,
    )
    const response = await fetch({ origin: 'https://app.example' })
    assert.equal(response.status, 200)
    assert.equal(response.headers.get('server'), null, 'strip_response_headers is outside: what it strips never leaks')
    assert.equal(response.headers.get('x-frame-options'), 'DENY', 'secure_headers sets only what is missing')
    assert.equal(response.headers.get('x-content-type-options'), 'nosniff', 'secure_headers fills in what the rules removed')
    assert.match(response.headers.get('vary') ?? '', /accept.*origin/i, "cors adds Origin to the rules' Vary")
    assert.equal(response.headers.get('access-control-allow-origin'), 'https://app.example')
  })
})
