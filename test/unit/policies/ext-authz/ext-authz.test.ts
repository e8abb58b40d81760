// ext_authz against a real authorization server (node:http) through Node's upstream client, the one
// `pillion run` gives the policy on Node.
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { loadConfigText } from '../../../../src/config/load.ts'
import { GatewayError } from '../../../../src/core/errors.ts'
import { extAuthzLayer, type ExtAuthzPolicy } from '../../../../src/policies/ext-authz/index.ts'
import { DecisionCache } from '../../../../src/policies/ext-authz/decision-cache.ts'
import type { RouteContext } from '../../../../src/policies/policy.ts'
import { nodeUpstream } from '../../../../src/runtime/node-upstream.ts'
import { tlsFileProblems } from '../../../../src/gateway/tls-files.ts'
import { ONE_ROUTE, problemLines } from '../../fakes/policy-text.ts'
import { echoStep, exchangeFor, fakeContext, fakeGateway, record } from '../../fakes/security-fakes.ts'

function policyOf(table: string): ExtAuthzPolicy {
  return loadConfigText(`${ONE_ROUTE}\n[routes.ext_authz]\n${table}\n`, 'pillion.toml').routes[0]!.policies.extAuthz!
}

interface Asked {
  method: string
  url: string
  headers: IncomingMessage['headers']
  body: string
}

/** The authorization service: `decide` answers each check; every check is kept in `asked`. */
class Authorizer {
  asked: Asked[] = []
  decide: (check: Asked, res: ServerResponse) => void = (_check, res) => res.end()
  server!: Server
  url = ''
  /** Remote ports of the connections checks came on, to see them reused. */
  ports = new Set<number>()
  async start() {
    this.server = createServer((req, res) => {
      this.ports.add(req.socket.remotePort!)
      const chunks: Buffer[] = []
      req.on('data', (chunk: Buffer) => chunks.push(chunk))
      req.on('end', () => {
        const check = { method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString() }
        this.asked.push(check)
        this.decide(check, res)
      })
    })
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/check`
  }
  close() {
    return new Promise<void>((resolve) => {
      this.server.closeAllConnections()
      this.server.close(() => resolve())
    })
  }
}

let authorizer: Authorizer
before(async () => {
  authorizer = new Authorizer()
  await authorizer.start()
})
after(() => authorizer.close())

function setup(table: string, now = () => 0) {
  const context: RouteContext = { ...fakeContext('orders', fakeGateway(undefined, { send: nodeUpstream })), upstream: { config: { name: 'app' } } as never, now }
  const decisions = record(context.events, 'ext_authz_decision')
  const upstream = echoStep()
  // A loaded machine can take longer than the 200ms default to answer: only the timeout test uses it.
  const timeout = /^timeout\s*=/m.test(table) ? '' : 'timeout = "10s"\n'
  const step = extAuthzLayer(policyOf(`url = "${authorizer.url}"\n${timeout}${table}`), context)(upstream)
  const send = async (path: string, init: RequestInit = {}) => {
    const exchange = exchangeFor(`http://gw.example${path}`, init)
    try {
      const response = await step(exchange)
      return { response, exchange, error: undefined }
    } catch (error) {
      assert.ok(error instanceof GatewayError, String(error))
      return { response: undefined, exchange, error }
    }
  }
  return { send, decisions, upstream }
}

describe('ext_authz config', () => {
  test('defaults: Envoy\'s 200ms, deny on error, the token and the session cookie sent', () => {
    assert.deepEqual(policyOf('url = "http://127.0.0.1:9000/check"'), {
      url: 'http://127.0.0.1:9000/check',
      headers: ['authorization', 'cookie'],
      upstreamHeaders: [],
      clientHeaders: ['content-type', 'www-authenticate', 'location', 'set-cookie', 'retry-after'],
      timeoutMs: 200,
      onError: 'deny',
      includeBodyBytes: 0,
    })
  })

  test('ca is relative to the policy file, and must hold a PEM certificate before the config goes into service', async () => {
    const text = `${ONE_ROUTE}\n[routes.ext_authz]\nurl = "https://authz.internal/check"\nca = "certs/ca.pem"\n`
    const config = loadConfigText(text, 'conf/pillion.toml')
    assert.equal(config.routes[0]!.policies.extAuthz!.ca, 'conf/certs/ca.pem')
    const files: Record<string, string> = { 'conf/certs/ca.pem': 'not a certificate' }
    const host = {
      readTextFile: async (path: string) => files[path] ?? assert.fail(`read ${path}`),
      pem: { certificates: (pem: string) => (pem.includes('-----BEGIN CERTIFICATE-----') ? undefined : 'no PEM certificate in it'), keyPair: () => undefined },
    }
    assert.deepEqual(await tlsFileProblems(config, host), ['routes.route-0.ext_authz.ca conf/certs/ca.pem: no PEM certificate in it'])
    files['conf/certs/ca.pem'] = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'
    assert.deepEqual(await tlsFileProblems(config, host), [])
  })

  test('mistakes name their key path and what was expected', () => {
    const at = (table: string) => problemLines(`${ONE_ROUTE}\n[routes.ext_authz]\n${table}\n`)
    assert.deepEqual(at('headers = ["authorization"]'), ['routes[0].ext_authz.url: required key missing'])
    assert.deepEqual(at('url = "127.0.0.1:9000"'), ['routes[0].ext_authz.url: expected an http(s) URL like "http://127.0.0.1:9000/check", got "127.0.0.1:9000"'])
    assert.deepEqual(at('url = "http://a/"\nupstream_headers = ["connection"]'), [
      'routes[0].ext_authz.upstream_headers[0]: expected an end-to-end header name like "x-user", got "connection": a hop-by-hop header belongs to one connection and is never passed on',
    ])
    assert.deepEqual(at('url = "http://a/"\ntimeout = "0s"'), ['routes[0].ext_authz.timeout: expected a duration above zero, like "200ms" or "10s", got "0s"'])
    assert.deepEqual(at('url = "http://a/"\non_error = "open"'), ['routes[0].ext_authz.on_error: expected one of "deny", "allow", got "open"'])
    assert.deepEqual(at('url = "http://a/"\ncache = { key = "${user}", ttl = "10s" }'), [
      'routes[0].ext_authz.cache.key: unknown variable ${user}; expected one of ${client_ip}, ${request_id}, ${route}, ${upstream}, ${consumer}, ${method}, ${path}, ${jwt.CLAIM}, ${header.NAME} (write $${ for a literal ${)',
    ])
    assert.deepEqual(at('url = "http://a/"\ncache = { key = "all", ttl = "10s" }'), [
      'routes[0].ext_authz.cache.key: expected a key with a variable, like "${header.authorization}"; a constant key would share one decision among all requests',
    ])
    assert.deepEqual(at('url = "http://a/"\ncache = { key = "${header.authorization}" }'), ['routes[0].ext_authz.cache.ttl: required key missing'])
  })
})

describe('ext_authz layer', () => {
  test('asks with method, path, host and the listed headers only; a 2xx allows and sets the listed answer headers upstream', async () => {
    authorizer.decide = (_check, res) => res.writeHead(200, { 'x-user-id': 'u-42', 'x-internal': 'no' }).end('ok')
    const { send, upstream } = setup('upstream_headers = ["x-user-id", "x-tenant"]')
    const { response } = await send('/orders/7?expand=items', {
      method: 'DELETE',
      headers: { authorization: 'Bearer abc', cookie: 'sid=1', 'x-other': 'secret', 'x-user-id': 'forged', 'x-tenant': 'forged' },
    })
    assert.equal(response?.status, 200)
    const check = authorizer.asked.at(-1)!
    assert.equal(check.method, 'GET')
    assert.equal(check.url, '/check')
    assert.equal(check.headers.authorization, 'Bearer abc')
    assert.equal(check.headers.cookie, 'sid=1')
    assert.equal(check.headers['x-other'], undefined)
    assert.equal(check.headers['x-forwarded-method'], 'DELETE')
    assert.equal(check.headers['x-forwarded-uri'], '/orders/7?expand=items')
    assert.equal(check.headers['x-forwarded-host'], undefined, 'the test request carries no Host header of its own')
    assert.equal(check.headers['x-forwarded-for'], '127.0.0.1')
    assert.equal(check.headers['x-request-id'], 'req-1')
    assert.deepEqual(upstream.calls[0]!.upstreamHeaderEdits, [
      ['x-user-id', 'u-42'],
      ['x-tenant', null],
    ])
  })

  test('any other answer goes to the client as the authorizer gave it, with the allowed headers only', async () => {
    authorizer.decide = (_check, res) => {
      res.setHeader('set-cookie', ['a=1', 'b=2'])
      res.writeHead(302, { location: 'https://login.example/?next=/orders', 'x-internal': 'secret', 'content-type': 'text/plain' }).end('to the login page')
    }
    const { send, upstream, decisions } = setup('')
    const { response, exchange } = await send('/orders')
    assert.equal(response!.status, 302)
    assert.equal(response!.headers.get('location'), 'https://login.example/?next=/orders')
    assert.deepEqual(response!.headers.getSetCookie(), ['a=1', 'b=2'])
    assert.equal(response!.headers.get('x-internal'), null)
    assert.equal(response!.headers.get('x-request-id'), 'req-1')
    assert.equal(await response!.text(), 'to the login page')
    assert.equal(upstream.calls.length, 0)
    assert.equal(exchange.authz, 'ext_authz')
    assert.deepEqual(decisions, [{ route: 'orders', result: 'denied', cached: false }])
  })

  test('include_body sends the first bytes in a POST, and the upstream still gets the whole body', async () => {
    authorizer.decide = (_check, res) => res.end()
    const { send, upstream } = setup('include_body = 4')
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('ab'))
        controller.enqueue(new TextEncoder().encode('cdef'))
        controller.enqueue(new TextEncoder().encode('ghij'))
        controller.close()
      },
    })
    const { response } = await send('/orders', { method: 'POST', body, headers: { 'content-type': 'text/plain' } })
    const check = authorizer.asked.at(-1)!
    assert.equal(check.method, 'POST')
    assert.equal(check.body, 'abcd')
    assert.equal(check.headers['content-type'], 'text/plain')
    assert.equal((await response!.json()).bytes, 10)
    assert.equal(upstream.calls.length, 1)
  })

  test('an authorizer that is down: on_error = "deny" answers 503 authz_unavailable, "allow" goes on without the upstream headers', async () => {
    const down = new Authorizer()
    await down.start()
    const url = down.url
    await down.close()
    const context = fakeContext('orders', fakeGateway(undefined, { send: nodeUpstream }))
    const failures = record(context.events, 'ext_authz_decision')
    const deny = extAuthzLayer(policyOf(`url = "${url}"`), { ...context, upstream: { config: { name: 'app' } } as never })(echoStep())
    await assert.rejects(deny(exchangeFor('http://gw/orders')), (error: GatewayError) => error.code === 'authz_unavailable' && error.status === 503)
    const upstream = echoStep()
    const allow = extAuthzLayer(policyOf(`url = "${url}"\non_error = "allow"\nupstream_headers = ["x-user-id"]`), { ...context, upstream: { config: { name: 'app' } } as never })(upstream)
    const exchange = exchangeFor('http://gw/orders', { headers: { 'x-user-id': 'forged' } })
    const response = await allow(exchange)
    assert.equal(response.status, 200)
    assert.equal(exchange.authz, 'ext_authz:failed_open')
    assert.deepEqual(upstream.calls[0]!.upstreamHeaderEdits, [['x-user-id', null]])
    assert.deepEqual(
      failures.map((e) => [e.result, e.error]),
      [
        ['error_denied', 'unavailable'],
        ['error_allowed', 'unavailable'],
      ],
    )
  })

  test('a slow authorizer times out and follows on_error', async () => {
    const answered: ServerResponse[] = []
    authorizer.decide = (_check, res) => answered.push(res) // never answers on its own
    const { send, decisions } = setup('timeout = "50ms"')
    const { error } = await send('/orders')
    assert.equal(error?.code, 'authz_unavailable')
    assert.match(error!.message, /did not answer within 50ms/)
    assert.equal(decisions[0]!.error, 'timeout')
    for (const res of answered) res.end()
  })

  test('decisions are cached by key for the ttl; errors are not', async () => {
    let clock = 0
    let allow = true
    authorizer.decide = (_check, res) => res.writeHead(allow ? 200 : 403, { 'x-user-id': 'u-1' }).end(allow ? '' : 'no')
    const { send, decisions } = setup('upstream_headers = ["x-user-id"]\ncache = { key = "${header.authorization} ${method} ${path}", ttl = "10s" }', () => clock)
    const asked = authorizer.asked.length
    const token = { authorization: 'Bearer one' }
    assert.equal((await send('/orders', { headers: token })).response!.status, 200)
    assert.equal((await send('/orders', { headers: token })).response!.status, 200)
    assert.equal(authorizer.asked.length, asked + 1, 'the second came from the cache')
    assert.equal((await send('/orders/2', { headers: token })).response!.status, 200)
    assert.equal(authorizer.asked.length, asked + 2, 'another path is another key')
    allow = false
    clock = 10_001
    assert.equal((await send('/orders', { headers: token })).response!.status, 403, 'expired: asked again')
    assert.equal((await send('/orders', { headers: token })).response!.status, 403, 'a denial is remembered too')
    assert.equal(authorizer.asked.length, asked + 3)
    assert.equal((await send('/orders')).response!.status, 403)
    assert.equal(authorizer.asked.length, asked + 4, 'an empty key is never cached')
    assert.deepEqual(
      decisions.map((e) => `${e.result}${e.cached ? ' (cached)' : ''}`),
      ['allowed', 'allowed (cached)', 'allowed', 'denied', 'denied (cached)', 'denied'],
    )
  })

  test('connections to the authorizer are kept alive and reused', async () => {
    authorizer.decide = (_check, res) => res.end()
    authorizer.ports.clear()
    const { send } = setup('')
    for (let i = 0; i < 10; i++) assert.equal((await send('/orders')).response!.status, 200)
    // undici hands a small answer over before its connection is free again, so one check after
    // another alternates between two pooled connections; without reuse there would be ten.
    assert.ok(authorizer.ports.size <= 2, `${authorizer.ports.size} connections for 10 checks`)
  })
})

describe('decision cache', () => {
  test('the oldest entry goes first past max_entries; an expired entry is gone', () => {
    const cache = new DecisionCache<string>(100, 2)
    cache.set('a', 'A', 0)
    cache.set('b', 'B', 0)
    cache.set('c', 'C', 0)
    assert.equal(cache.get('a', 1), undefined)
    assert.equal(cache.get('b', 1), 'B')
    assert.equal(cache.get('c', 100), undefined)
    assert.equal(cache.size, 1)
  })
})
