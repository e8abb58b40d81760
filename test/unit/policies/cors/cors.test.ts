import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { loadConfigText } from '../../../../src/config/load.ts'
import { GatewayError } from '../../../../src/core/errors.ts'
import { corsLayer } from '../../../../src/policies/cors/index.ts'
import { secureHeadersLayer, stripResponseHeadersLayer } from '../../../../src/policies/response-headers/index.ts'
import type { Step } from '../../../../src/proxy/exchange.ts'
import { ONE_ROUTE, problemLines } from '../../fakes/policy-text.ts'
import { echoStep, exchangeFor, fakeContext } from '../../fakes/security-fakes.ts'
import type { CorsPolicy } from '../../../../src/policies/cors/index.ts'

const POLICY: CorsPolicy = {
  origins: ['https://app.example', 'https://admin.example'],
  methods: ['GET', 'POST'],
  headers: ['content-type', 'authorization'],
  exposeHeaders: ['x-request-id'],
  maxAgeSeconds: 600,
  credentials: true,
}

describe('cors config', () => {
  test('origins are normalized; defaults follow Hono', () => {
    const config = loadConfigText(`${ONE_ROUTE}\n[routes.cors]\norigins = ["https://App.Example:443/"]\nmax_age = "10m"\n`, 'x.toml')
    assert.deepEqual(config.routes[0]!.policies.cors, {
      origins: ['https://app.example'],
      methods: ['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'PATCH'],
      headers: [],
      exposeHeaders: [],
      credentials: false,
      maxAgeSeconds: 600,
    })
  })

  test('credentials with a wildcard origin, and origins with paths, are refused', () => {
    assert.match(problemLines(`${ONE_ROUTE}\n[routes.cors]\norigins = ["*"]\ncredentials = true\n`)[0]!, /^routes\[0\]\.cors\.credentials: cannot be true/)
    assert.match(problemLines(`${ONE_ROUTE}\n[routes.cors]\norigins = ["https://a.example/app"]\n`)[0]!, /^routes\[0\]\.cors\.origins\[0\]: expected "\*" or an origin/)
  })
})

describe('cors layer', () => {
  test('a preflight is answered here and never reaches the chain below', async () => {
    const next = echoStep()
    const response = await corsLayer(POLICY, fakeContext())(next)(
      exchangeFor('http://gw/x', {
        method: 'OPTIONS',
        headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
      }),
    )
    assert.equal(response.status, 204)
    assert.equal(next.calls.length, 0)
    assert.equal(response.headers.get('access-control-allow-origin'), 'https://app.example')
    assert.equal(response.headers.get('access-control-allow-methods'), 'GET,POST')
    assert.equal(response.headers.get('access-control-allow-headers'), 'content-type,authorization')
    assert.equal(response.headers.get('access-control-max-age'), '600')
    assert.equal(response.headers.get('access-control-allow-credentials'), 'true')
  })

  test('answers get CORS headers for allowed origins only, and Vary: Origin', async () => {
    const step = corsLayer(POLICY, fakeContext())(echoStep())
    const allowed = await step(exchangeFor('http://gw/x', { headers: { origin: 'https://admin.example' } }))
    assert.equal(allowed.headers.get('access-control-allow-origin'), 'https://admin.example')
    assert.equal(allowed.headers.get('access-control-expose-headers'), 'x-request-id')
    assert.match(allowed.headers.get('vary')!, /Origin/)
    const other = await step(exchangeFor('http://gw/x', { headers: { origin: 'https://evil.example' } }))
    assert.equal(other.headers.get('access-control-allow-origin'), null)
  })

  test("the upstream's own CORS headers are replaced by the policy's", async () => {
    const upstream: Step = async () => new Response('x', { headers: { 'access-control-allow-origin': '*' } })
    const response = await corsLayer(POLICY, fakeContext())(upstream)(exchangeFor('http://gw/x', { headers: { origin: 'https://app.example' } }))
    assert.equal(response.headers.get('access-control-allow-origin'), 'https://app.example')
  })

  test('error answers carry the CORS headers too', async () => {
    const failing: Step = async () => {
      throw new GatewayError('unauthorized', 'no token')
    }
    const error = await corsLayer(POLICY, fakeContext())(failing)(exchangeFor('http://gw/x', { headers: { origin: 'https://app.example' } })).catch((e) => e)
    assert.ok(error instanceof GatewayError)
    assert.equal(error.headers!['access-control-allow-origin'], 'https://app.example')
  })

  test("the chain's own Response comes back, edited in place, not a copy (the forwarder's buffered answer stays recognised)", async () => {
    const own = new Response('x', { headers: { 'set-cookie': 'a=1' } })
    const response = await corsLayer(POLICY, fakeContext())(async () => own)(exchangeFor('http://gw/x', { headers: { origin: 'https://app.example' } }))
    assert.equal(response, own)
    assert.equal(response.headers.get('access-control-allow-origin'), 'https://app.example')
    assert.equal(response.headers.get('access-control-allow-credentials'), 'true')
    assert.match(response.headers.get('vary')!, /Origin/)
    assert.deepEqual(response.headers.getSetCookie(), ['a=1'])
  })

  test('an answer whose headers cannot change (fetch, Response.redirect) is copied with the CORS headers', async () => {
    const immutable = Response.redirect('https://app.example/next', 302)
    const response = await corsLayer(POLICY, fakeContext())(async () => immutable)(exchangeFor('http://gw/x', { headers: { origin: 'https://app.example' } }))
    assert.notEqual(response, immutable)
    assert.equal(response.status, 302)
    assert.equal(response.headers.get('location'), 'https://app.example/next')
    assert.equal(response.headers.get('access-control-allow-origin'), 'https://app.example')
  })

  test('an OPTIONS request that is not a preflight goes through', async () => {
    const next = echoStep()
    const response = await corsLayer(POLICY, fakeContext())(next)(exchangeFor('http://gw/x', { method: 'OPTIONS', headers: { origin: 'https://app.example' } }))
    assert.equal(response.status, 200)
    assert.equal(next.calls.length, 1)
  })
})

describe('secure headers and stripped response headers', () => {
  const upstream: Step = async () =>
    new Response('x', { headers: { server: 'gunicorn/20', 'x-powered-by': 'Express', 'x-frame-options': 'DENY', 'content-type': 'text/plain' } })

  test('config: true, false, or a table of Hono options', () => {
    const load = (line: string) => loadConfigText(`${ONE_ROUTE}\n${line}\n`, 'x.toml').routes[0]!.policies
    assert.deepEqual(load('secure_headers = true').secureHeaders, {})
    assert.equal(load('secure_headers = false').secureHeaders, false)
    assert.deepEqual(load('secure_headers = { strict_transport_security = false, content_security_policy = { default-src = ["\'self\'"] } }').secureHeaders, {
      strictTransportSecurity: false,
      contentSecurityPolicy: { defaultSrc: ["'self'"] },
    })
    assert.deepEqual(load('strip_response_headers = ["Server", "x-powered-by"]').stripResponseHeaders, ['server', 'x-powered-by'])
  })

  test("Hono's secure headers are added where the upstream set none; listed headers are stripped", async () => {
    const response = await stripResponseHeadersLayer(['server', 'x-powered-by'])(secureHeadersLayer({})(upstream))(exchangeFor('http://gw/x'))
    assert.equal(response.headers.get('x-content-type-options'), 'nosniff')
    assert.equal(response.headers.get('strict-transport-security'), 'max-age=15552000; includeSubDomains')
    assert.equal(response.headers.get('x-frame-options'), 'DENY', "the upstream's own value stays")
    assert.equal(response.headers.get('server'), null)
    assert.equal(response.headers.get('x-powered-by'), null)
    assert.equal(await response.text(), 'x')
  })

  test('stripping edits the answer in place; an immutable one is copied', async () => {
    const own = new Response('x', { headers: { server: 'gunicorn/20' } })
    const layer = stripResponseHeadersLayer(['server'])
    assert.equal(await layer(async () => own)(exchangeFor('http://gw/x')), own)
    assert.equal(own.headers.get('server'), null)
    const immutable = Response.redirect('https://app.example/next', 302)
    const copied = await layer(async () => immutable)(exchangeFor('http://gw/x'))
    assert.notEqual(copied, immutable)
    assert.equal(copied.headers.get('location'), 'https://app.example/next')
  })

  test('options replace or drop headers; error answers get them too', async () => {
    const layer = secureHeadersLayer({ xContentTypeOptions: false, referrerPolicy: 'same-origin' })
    const response = await layer(upstream)(exchangeFor('http://gw/x'))
    assert.equal(response.headers.get('x-content-type-options'), null)
    assert.equal(response.headers.get('referrer-policy'), 'same-origin')
    assert.equal(response.headers.get('server'), 'gunicorn/20', 'not stripped unless listed')
    const error = await layer(async () => {
      throw new GatewayError('forbidden', 'no')
    })(exchangeFor('http://gw/x')).catch((e) => e)
    assert.equal(error.headers['referrer-policy'], 'same-origin')
  })
})
