import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, UnsecuredJWT, type JWK } from 'jose'
import { loadConfigText } from '../../../../src/config/load.ts'
import { GatewayError } from '../../../../src/core/errors.ts'
import { EventBus } from '../../../../src/core/events.ts'
import { cacheLifetimeMs, RemoteJwks } from '../../../../src/policies/jwt/jwks.ts'
import { jwtLayer } from '../../../../src/policies/jwt/index.ts'
import { ONE_ROUTE, problemLines } from '../../fakes/policy-text.ts'
import { echoStep, exchangeFor, fakeContext, fakeGateway, MemoryHost, record } from '../../fakes/security-fakes.ts'
import type { JwtPolicy } from '../../../../src/policies/jwt/index.ts'

const rsa = await generateKeyPair('RS256')
const other = await generateKeyPair('RS256')
const ec = await generateKeyPair('ES256')
const rsaJwk: JWK = { ...(await exportJWK(rsa.publicKey)), kid: 'rsa-1', alg: 'RS256' }
const ecJwk: JWK = { ...(await exportJWK(ec.publicKey)), kid: 'ec-1' }

const now = () => Math.floor(Date.now() / 1000)

function sign(claims: Record<string, unknown>, options: { key?: CryptoKey; kid?: string; alg?: string } = {}) {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: options.alg ?? 'RS256', kid: options.kid ?? 'rsa-1' })
    .sign(options.key ?? rsa.privateKey)
}

const GOOD = { sub: 'alice', tenant: 'acme', iss: 'https://auth.example', aud: 'orders', exp: now() + 600 }

function policy(overrides: Partial<JwtPolicy> = {}): JwtPolicy {
  return {
    keys: [rsaJwk as Record<string, unknown>, ecJwk as Record<string, unknown>],
    issuer: ['https://auth.example'],
    audience: ['orders'],
    algorithms: ['RS256', 'ES256'],
    requiredClaims: ['sub'],
    requireExpiration: true,
    clockSkewMs: 30_000,
    forwardClaims: [
      ['x-user', 'sub'],
      ['x-tenant', 'tenant'],
      ['x-roles', 'roles'],
    ],
    forwardToken: false,
    ...overrides,
  }
}

async function call(token: string | undefined, jwt = policy(), headers: Record<string, string> = {}) {
  const context = fakeContext('r', fakeGateway())
  const rejects = record(context.events, 'auth_reject')
  const next = echoStep()
  const step = jwtLayer(jwt, context)(next)
  const exchange = exchangeFor('http://gw/x', { headers: { ...headers, ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) } })
  try {
    const response = await step(exchange)
    return { response, exchange, rejects, error: undefined }
  } catch (error) {
    assert.ok(error instanceof GatewayError, String(error))
    assert.equal(next.calls.length, 0, 'the upstream was called')
    return { response: undefined, exchange, rejects, error }
  }
}

async function rejected(token: string | undefined, jwt = policy()): Promise<{ reason: string; challenge: string }> {
  const { error, rejects } = await call(token, jwt)
  assert.ok(error, 'expected 401')
  assert.equal(error.code, 'unauthorized')
  assert.equal(error.status, 401)
  return { reason: rejects[0]!.reason, challenge: error.headers!['www-authenticate']! }
}

describe('jwt config', () => {
  const load = (table: string) => loadConfigText(`${ONE_ROUTE}\n[routes.jwt]\n${table}\n`, 'x.toml').routes[0]!.policies.jwt
  const problems = (table: string) => problemLines(`${ONE_ROUTE}\n[routes.jwt]\n${table}\n`)

  test('the issue example normalizes, with Envoy-style defaults', () => {
    const jwt = load(`jwks = "http://127.0.0.1:7001/.well-known/jwks.json"
issuer = "https://auth.example"
audience = "orders"
algorithms = ["RS256", "ES256"]
required_claims = ["sub"]
clock_skew = "30s"
forward_claims = { "x-user" = "sub", "X-Tenant" = "tenant" }`)
    assert.deepEqual(jwt, {
      jwks: 'http://127.0.0.1:7001/.well-known/jwks.json',
      issuer: ['https://auth.example'],
      audience: ['orders'],
      algorithms: ['RS256', 'ES256'],
      requiredClaims: ['sub'],
      requireExpiration: true,
      clockSkewMs: 30_000,
      forwardClaims: [
        ['x-user', 'sub'],
        ['x-tenant', 'tenant'],
      ],
      forwardToken: false,
    })
    assert.deepEqual(load('secret_env = "JWT_SECRET"')!.algorithms, ['HS256'])
    assert.equal(load('secret_env = "JWT_SECRET"')!.clockSkewMs, 60_000)
  })

  test('exactly one key source', () => {
    assert.deepEqual(problems('issuer = "x"'), ['routes[0].jwt: expected exactly one of jwks, keys or secret_env'])
    assert.deepEqual(problems('jwks = "http://a/j"\nsecret_env = "S"'), ['routes[0].jwt: expected exactly one of jwks, keys or secret_env'])
  })

  test('unsigned tokens and algorithm confusion are refused at load', () => {
    assert.deepEqual(problems('jwks = "http://a/j"\nalgorithms = ["none"]'), ['routes[0].jwt.algorithms[0]: "none" (unsigned tokens) is never accepted'])
    assert.match(problems('jwks = "http://a/j"\nalgorithms = ["HS256"]')[0]!, /^routes\[0\]\.jwt\.algorithms: expected public-key algorithms/)
    assert.match(problems('secret_env = "S"\nalgorithms = ["RS256"]')[0]!, /^routes\[0\]\.jwt\.algorithms: expected only HS256/)
  })

  test('keys must be public keys', () => {
    assert.match(problems('keys = [ { kty = "oct", k = "c2VjcmV0" } ]')[0]!, /routes\[0\]\.jwt\.keys\[0\]: is a secret/)
    assert.match(problems('keys = [ { kty = "EC", crv = "P-256", x = "a", y = "b", d = "c" } ]')[0]!, /routes\[0\]\.jwt\.keys\[0\]: is a private key/)
  })

  test('forwarded claims cannot overwrite the proxy own headers, and the JWKS must be a URL', () => {
    assert.match(problems('jwks = "http://a/j"\nforward_claims = { host = "sub" }')[0]!, /set by the proxy itself/)
    assert.match(problems('jwks = "file:///etc/jwks"')[0]!, /expected an http\(s\) URL/)
  })
})

describe('jwt layer', () => {
  test('a valid token passes; claims go on the exchange and upstream; the token does not', async () => {
    const { response, exchange } = await call(await sign({ ...GOOD, roles: ['a', 'b'] }), policy(), { 'x-tenant': 'evil', 'x-user': 'mallory' })
    assert.equal(response!.status, 200)
    assert.equal(exchange.claims!.sub, 'alice')
    assert.deepEqual(exchange.upstreamHeaderEdits, [
      ['x-user', 'alice'],
      ['x-tenant', 'acme'],
      ['x-roles', '["a","b"]'],
      ['authorization', null],
    ])
  })

  test("a claim the token lacks still removes the client's header", async () => {
    const { exchange } = await call(await sign({ sub: 'alice', iss: GOOD.iss, aud: GOOD.aud, exp: GOOD.exp }), policy(), { 'x-tenant': 'evil' })
    assert.deepEqual(exchange.upstreamHeaderEdits?.find(([name]) => name === 'x-tenant'), ['x-tenant', null])
  })

  test('non-ASCII claims are percent-encoded; forward_token keeps Authorization', async () => {
    const { exchange } = await call(await sign({ ...GOOD, sub: 'zoë\r\nx: y' }), policy({ forwardToken: true }))
    assert.deepEqual(exchange.upstreamHeaderEdits, [
      ['x-user', 'zo%C3%AB%0D%0Ax%3A%20y'],
      ['x-tenant', 'acme'],
      ['x-roles', null],
    ])
  })

  test('ES256 keys work alongside RS256', async () => {
    const { response } = await call(await sign(GOOD, { key: ec.privateKey, kid: 'ec-1', alg: 'ES256' }))
    assert.equal(response!.status, 200)
  })

  test('missing and malformed tokens', async () => {
    assert.deepEqual(await rejected(undefined), { reason: 'missing', challenge: 'Bearer' })
    const basic = await call(undefined, policy(), { authorization: 'Basic YWxpY2U6cHc=' })
    assert.equal(basic.rejects[0]!.reason, 'malformed')
    assert.equal((await rejected('not.a.jwt')).reason, 'malformed')
    assert.equal((await rejected('abc')).reason, 'malformed')
  })

  test('a verified token is found again however the header spells Bearer; a header that is not "Bearer <token>" is refused, even around one', async () => {
    const context = fakeContext('r', fakeGateway())
    const rejects = record(context.events, 'auth_reject')
    const step = jwtLayer(policy(), context)(echoStep())
    const token = await sign(GOOD)
    const send = (authorization: string) => step(exchangeFor('http://gw/x', { headers: { authorization } }))
    assert.equal((await send(`Bearer ${token}`)).status, 200)
    for (const spelled of [`bearer ${token}`, `BEARER   ${token}`, `Bearer ${token}  `]) assert.equal((await send(spelled)).status, 200, spelled)
    const bad = [`Bearer ${token} x`, `Bearer\t${token}`, `Bearer ${token}!`, `Bearerx${token}`, `Bearer ${token.slice(0, -1)}*`]
    for (const header of bad) await assert.rejects(send(header), { code: 'unauthorized' }, header)
    assert.deepEqual(
      rejects.map((reject) => reject.reason),
      bad.map(() => 'malformed'),
    )
  })

  test('expired, not yet valid, and the clock skew between', async () => {
    assert.equal((await rejected(await sign({ ...GOOD, exp: now() - 120 }))).reason, 'expired')
    assert.equal((await call(await sign({ ...GOOD, exp: now() - 10 }))).response?.status, 200, 'within 30s of skew')
    assert.equal((await rejected(await sign({ ...GOOD, nbf: now() + 120 }))).reason, 'not_yet_valid')
    const expired = await rejected(await sign({ ...GOOD, exp: now() - 120 }))
    assert.equal(expired.challenge, 'Bearer error="invalid_token", error_description="the token has expired"')
  })

  test('wrong signature, issuer, audience, missing claims', async () => {
    assert.equal((await rejected(await sign(GOOD, { key: other.privateKey }))).reason, 'signature')
    assert.equal((await rejected(await sign({ ...GOOD, iss: 'https://evil.example' }))).reason, 'issuer')
    assert.equal((await rejected(await sign({ ...GOOD, aud: 'payments' }))).reason, 'audience')
    assert.equal((await rejected(await sign({ iss: GOOD.iss, aud: GOOD.aud, exp: GOOD.exp }))).reason, 'claims')
    assert.equal((await rejected(await sign({ sub: 'a', iss: GOOD.iss, aud: GOOD.aud }))).reason, 'claims', 'no exp')
    assert.equal((await call(await sign({ sub: 'a', iss: GOOD.iss, aud: GOOD.aud }), policy({ requireExpiration: false }))).response?.status, 200)
    assert.equal((await rejected(await sign(GOOD, { kid: 'nobody' }))).reason, 'unknown_key')
  })

  test('alg none and HS256 signed with the public key are refused', async () => {
    const unsigned = new UnsecuredJWT(GOOD).encode()
    assert.equal((await rejected(unsigned)).reason, 'algorithm')
    const publicPem = new TextEncoder().encode(await exportSPKI(rsa.publicKey))
    const confused = await new SignJWT(GOOD).setProtectedHeader({ alg: 'HS256', kid: 'rsa-1' }).sign(publicPem)
    assert.equal((await rejected(confused)).reason, 'algorithm')
    // Even if a route allowed HS256, a JWKS never yields a secret key.
    assert.equal((await rejected(confused, policy({ algorithms: ['RS256', 'HS256'] }))).reason, 'algorithm')
  })

  test('HMAC secrets come from the environment and must be long enough', async () => {
    const host = new MemoryHost()
    const secret = 'a-long-enough-secret-of-32-bytes!'
    host.env_.set('JWT_SECRET', secret)
    const hmac = policy({ keys: undefined, secretEnv: 'JWT_SECRET', algorithms: ['HS256'] })
    delete hmac.keys
    const step = jwtLayer(hmac, fakeContext('r', fakeGateway(host)))(echoStep())
    const token = await new SignJWT(GOOD).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(secret))
    assert.equal((await step(exchangeFor('http://gw/x', { headers: { authorization: `Bearer ${token}` } }))).status, 200)
    const rsToken = await sign(GOOD)
    await assert.rejects(step(exchangeFor('http://gw/x', { headers: { authorization: `Bearer ${rsToken}` } })), { code: 'unauthorized' })
    host.env_.set('JWT_SECRET', 'short')
    assert.throws(() => jwtLayer(hmac, fakeContext('r', fakeGateway(host))), /is 5 bytes; HMAC secrets need at least 32/)
    host.env_.delete('JWT_SECRET')
    assert.throws(() => jwtLayer(hmac, fakeContext('r', fakeGateway(host))), /JWT_SECRET \(secret_env\) is not set/)
  })
})

describe('JWKS cache', () => {
  /** A JWKS server in memory: what it serves, and every fetch it saw. */
  function jwksServer() {
    const server = {
      keys: [rsaJwk] as JWK[],
      cacheControl: 'max-age=300' as string | null,
      down: false,
      fetches: 0,
      fetch: (async () => {
        server.fetches++
        if (server.down) throw new TypeError('fetch failed: connection refused')
        const headers = new Headers({ 'content-type': 'application/json' })
        if (server.cacheControl !== null) headers.set('cache-control', server.cacheControl)
        return new Response(JSON.stringify({ keys: server.keys }), { headers })
      }) as typeof fetch,
    }
    return server
  }

  function cacheFor(server: ReturnType<typeof jwksServer>) {
    const clock = { ms: 0 }
    const events = new EventBus()
    const refreshes = record(events, 'jwks_refresh')
    const jwks = new RemoteJwks('http://jwks/keys', { fetch: server.fetch, now: () => clock.ms, events })
    const header = (kid: string) => ({ alg: 'RS256', kid })
    const flat = { payload: '', signature: '' }
    const keyFor = async (kid: string) => jwks.getKey(header(kid), flat)
    return { clock, refreshes, keyFor, jwks }
  }

  test('Cache-Control max-age sets the lifetime, clamped; none means 10 minutes', () => {
    assert.equal(cacheLifetimeMs('public, max-age=300'), 300_000)
    assert.equal(cacheLifetimeMs('max-age=5'), 30_000)
    assert.equal(cacheLifetimeMs('no-store'), 30_000)
    assert.equal(cacheLifetimeMs('max-age=999999'), 86_400_000)
    assert.equal(cacheLifetimeMs('s-maxage=120, max-age=60'), 120_000)
    assert.equal(cacheLifetimeMs(null), 600_000)
    assert.equal(cacheLifetimeMs('private'), 600_000)
  })

  test('fetched once, kept for max-age, then refreshed in the background while the old keys serve', async () => {
    const server = jwksServer()
    const { clock, keyFor, refreshes, jwks } = cacheFor(server)
    await keyFor('rsa-1')
    await keyFor('rsa-1')
    assert.equal(server.fetches, 1)
    clock.ms = 299_000
    await keyFor('rsa-1')
    assert.equal(server.fetches, 1, 'still fresh')
    clock.ms = 300_000
    await keyFor('rsa-1')
    await jwks.settled()
    assert.equal(server.fetches, 2, 'stale: refreshed')
    assert.deepEqual(
      refreshes.map((e) => [e.reason, e.ok]),
      [
        ['initial', true],
        ['expired', true],
      ],
    )
  })

  test('an unknown kid refetches once, then not again within 30s, however many kids arrive', async () => {
    const server = jwksServer()
    const { clock, keyFor } = cacheFor(server)
    await keyFor('rsa-1')
    server.keys = [rsaJwk, { ...ecJwk, kid: 'rotated', alg: 'ES256' }]
    // The rotated key is found by the refetch an unknown kid triggers.
    await assert.rejects(keyFor('rotated'), /no applicable key/, 'header says RS256, key is EC: no match after refetch')
    assert.equal(server.fetches, 2)
    for (let i = 0; i < 50; i++) await assert.rejects(keyFor(`random-${i}`))
    assert.equal(server.fetches, 2, 'a flood of made-up kids did not reach the JWKS server')
    clock.ms = 30_000
    await assert.rejects(keyFor('random-again'))
    assert.equal(server.fetches, 3, 'after the cooldown, one more')
  })

  test('a rotated key is picked up on its first token', async () => {
    const server = jwksServer()
    const { keyFor } = cacheFor(server)
    await keyFor('rsa-1')
    server.keys = [rsaJwk, { ...rsaJwk, kid: 'rsa-2' }]
    assert.ok(await keyFor('rsa-2'))
    assert.equal(server.fetches, 2)
  })

  test('an outage keeps the cached keys, and is retried at most once a second', async () => {
    const server = jwksServer()
    const { clock, keyFor, refreshes, jwks } = cacheFor(server)
    await keyFor('rsa-1')
    server.down = true
    clock.ms = 300_000
    assert.ok(await keyFor('rsa-1'), 'stale keys still verify')
    await jwks.settled()
    assert.ok(await keyFor('rsa-1'))
    assert.equal(server.fetches, 2, 'one failed refresh, not one per request')
    assert.deepEqual(refreshes.at(-1), { url: 'http://jwks/keys', reason: 'expired', ok: false, keys: 1, error: 'fetch failed: connection refused' })
    clock.ms = 301_000
    await keyFor('rsa-1')
    await jwks.settled()
    assert.equal(server.fetches, 3)
  })

  test('no keys yet and the server down: unavailable, retried at most once a second', async () => {
    const server = jwksServer()
    server.down = true
    const { clock, keyFor } = cacheFor(server)
    await assert.rejects(keyFor('rsa-1'), { name: 'JwksUnavailableError' })
    await assert.rejects(keyFor('rsa-1'), { name: 'JwksUnavailableError' })
    assert.equal(server.fetches, 1)
    server.down = false
    clock.ms = 1_000
    assert.ok(await keyFor('rsa-1'))
    assert.equal(server.fetches, 2)
  })

  test('concurrent first requests share one fetch; a bad document keeps nothing', async () => {
    const server = jwksServer()
    const { keyFor } = cacheFor(server)
    await Promise.all([keyFor('rsa-1'), keyFor('rsa-1'), keyFor('rsa-1')])
    assert.equal(server.fetches, 1)
    const broken = jwksServer()
    broken.fetch = (async () => new Response('{"nokeys": true}')) as typeof fetch
    await assert.rejects(cacheFor(broken).keyFor('rsa-1'), { name: 'JwksUnavailableError' })
  })
})
