// JWT (with a real JWKS server), API keys (with a watched keys file), CORS and response headers,
// through the gateway as each runtime runs it.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { renameSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, UnsecuredJWT, type JWK } from 'jose'
import { request, startGateway, startUpstream, targets, tempDir, type Gateway, type Upstream } from './harness.ts'

const sha = (key: string) => createHash('sha256').update(key).digest('hex')

const first = await generateKeyPair('RS256')
const rotated = await generateKeyPair('ES256')
const stranger = await generateKeyPair('RS256')
const firstJwk: JWK = { ...(await exportJWK(first.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' }
const rotatedJwk: JWK = { ...(await exportJWK(rotated.publicKey)), kid: 'k2', alg: 'ES256', use: 'sig' }
const now = () => Math.floor(Date.now() / 1000)
const CLAIMS = { sub: 'alice', tenant: 'acme', iss: 'https://auth.example', aud: 'orders' }

function token(claims: Record<string, unknown> = {}, key = first.privateKey, header: Record<string, string> = { alg: 'RS256', kid: 'k1' }) {
  return new SignJWT({ ...CLAIMS, exp: now() + 300, ...claims }).setProtectedHeader(header as { alg: string }).sign(key)
}

/** A JWKS endpoint that counts its fetches; `keys` is what it serves now. */
class JwksServer {
  keys: JWK[] = [firstJwk]
  fetches = 0
  server!: Server
  url = ''
  async start() {
    this.server = createServer((_req, res) => {
      this.fetches++
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'public, max-age=600' })
      res.end(JSON.stringify({ keys: this.keys }))
    })
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/.well-known/jwks.json`
  }
  close() {
    return new Promise<void>((resolve) => {
      this.server.closeAllConnections()
      this.server.close(() => resolve())
    })
  }
}

function policy(upstream: Upstream, jwks: JwksServer, keysFile: string) {
  return `
[gateway]
service = "auth"
admin = "127.0.0.1:0"

[listeners.in]
listen = "127.0.0.1:0"
direction = "ingress"

[upstreams.echo]
endpoints = ["${upstream.url}"]

[[routes]]
name = "orders"
listener = "in"
path = "/orders/*"
upstream = "echo"

[routes.jwt]
jwks = "${jwks.url}"
issuer = "https://auth.example"
audience = "orders"
algorithms = ["RS256", "ES256"]
required_claims = ["sub"]
clock_skew = "30s"
forward_claims = { "x-user" = "sub", "x-tenant" = "tenant" }

[routes.cors]
origins = ["https://app.example"]
methods = ["GET", "POST"]
headers = ["authorization", "content-type"]
max_age = "10m"

[[routes]]
name = "partners"
listener = "in"
path = "/partners/*"
upstream = "echo"
api_key = { header = "x-api-key", keys_file = "${keysFile}" }
secure_headers = true
strip_response_headers = ["server", "x-powered-by"]
`
}

for (const target of targets()) {
  describe(`jwt, api keys, cors and response headers on ${target.name}`, { skip: target.missing }, () => {
    let upstream: Upstream
    let jwks: JwksServer
    let gateway: Gateway
    let base: string
    let keysFile: string
    let calls = 0

    before(async () => {
      upstream = await startUpstream((req, res) => {
        calls++
        res.setHeader('server', 'gunicorn/21')
        res.setHeader('x-powered-by', 'Django')
        res.setHeader('content-type', 'application/json')
        res.end(JSON.stringify({ url: req.url, headers: req.headers }))
      })
      jwks = new JwksServer()
      await jwks.start()
      keysFile = join(tempDir(), 'consumers.json')
      writeFileSync(keysFile, JSON.stringify({ [sha('key-billing')]: 'billing' }))
      gateway = await startGateway(target, policy(upstream, jwks, keysFile))
      base = gateway.listeners.in!
    })

    after(async () => {
      const code = await gateway?.stop()
      await upstream?.close()
      await jwks?.close()
      assert.equal(code, 0, `gateway exit code; stderr:\n${gateway?.stderr.join('\n')}`)
    })

    const bearer = (value: string) => ({ authorization: `Bearer ${value}` })

    it('a valid token reaches the service with its claims as headers, and without itself', async () => {
      const reply = await request(`${base}/orders/1`, { headers: { ...bearer(await token()), 'x-user': 'mallory', 'x-tenant': 'evil' } })
      assert.equal(reply.status, 200)
      const seen = reply.json().headers
      assert.equal(seen['x-user'], 'alice')
      assert.equal(seen['x-tenant'], 'acme')
      assert.equal(seen.authorization, undefined)
    })

    it("a claim the token lacks: the client's header is still removed", async () => {
      const reply = await request(`${base}/orders/1`, { headers: { ...bearer(await token({ tenant: undefined })), 'x-tenant': 'evil' } })
      assert.equal(reply.status, 200)
      assert.equal(reply.json().headers['x-tenant'], undefined)
    })

    it('401 with WWW-Authenticate for every kind of bad token, and the service never sees one', async () => {
      const before = calls
      const publicPem = new TextEncoder().encode(await exportSPKI(first.publicKey))
      const bad: Array<[string, Record<string, string>, RegExp]> = [
        ['missing', {}, /^Bearer$/],
        ['not bearer', { authorization: 'Basic YTpi' }, /invalid_token/],
        ['malformed', bearer('a.b.c'), /malformed/],
        ['expired', bearer(await token({ exp: now() - 120 })), /expired/],
        ['not yet valid', bearer(await token({ nbf: now() + 120 })), /not valid yet/],
        ['wrong signature', bearer(await token({}, stranger.privateKey)), /signature/],
        ['wrong issuer', bearer(await token({ iss: 'https://evil.example' })), /issuer/],
        ['wrong audience', bearer(await token({ aud: 'payments' })), /audience/],
        ['no sub', bearer(await token({ sub: undefined })), /"sub"/],
        ['alg none', bearer(new UnsecuredJWT({ ...CLAIMS, exp: now() + 300 }).encode()), /algorithm/],
        ['HS256 with the public key as secret', bearer(await token({}, publicPem as never, { alg: 'HS256', kid: 'k1' })), /algorithm/],
      ]
      for (const [name, headers, challenge] of bad) {
        const reply = await request(`${base}/orders/1`, { headers })
        assert.equal(reply.status, 401, name)
        assert.equal(reply.json().code, 'unauthorized', name)
        assert.match(String(reply.headers['www-authenticate']), challenge, name)
      }
      assert.equal(calls, before)
    })

    it('the JWKS is fetched once, not per request', async () => {
      for (let i = 0; i < 5; i++) assert.equal((await request(`${base}/orders/1`, { headers: bearer(await token()) })).status, 200)
      assert.equal(jwks.fetches, 1)
    })

    it('a rotated key is fetched on its first token; a flood of made-up kids does not hammer the JWKS server', async () => {
      jwks.keys = [firstJwk, rotatedJwk]
      const fresh = await token({}, rotated.privateKey, { alg: 'ES256', kid: 'k2' })
      assert.equal((await request(`${base}/orders/1`, { headers: bearer(fresh) })).status, 200)
      assert.equal(jwks.fetches, 2)
      for (let i = 0; i < 20; i++) {
        const forged = await token({}, stranger.privateKey, { alg: 'RS256', kid: `random-${i}` })
        assert.equal((await request(`${base}/orders/1`, { headers: bearer(forged) })).status, 401)
      }
      // One refetch per 30s at most: 22 without the limit.
      assert.ok(jwks.fetches <= 3, `${jwks.fetches} fetches`)
    })

    it('a CORS preflight is answered at the gateway, before the token is asked for', async () => {
      const before = calls
      const reply = await request(`${base}/orders/1`, {
        method: 'OPTIONS',
        headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization' },
      })
      assert.equal(reply.status, 204)
      assert.equal(reply.headers['access-control-allow-origin'], 'https://app.example')
      assert.equal(reply.headers['access-control-allow-methods'], 'GET,POST')
      assert.equal(reply.headers['access-control-max-age'], '600')
      assert.equal(calls, before)
    })

    it('CORS headers go on answers and on errors, for allowed origins only', async () => {
      const ok = await request(`${base}/orders/1`, { headers: { ...bearer(await token()), origin: 'https://app.example' } })
      assert.equal(ok.headers['access-control-allow-origin'], 'https://app.example')
      const denied = await request(`${base}/orders/1`, { headers: { origin: 'https://app.example' } })
      assert.equal(denied.status, 401)
      assert.equal(denied.headers['access-control-allow-origin'], 'https://app.example')
      const stranger = await request(`${base}/orders/1`, { headers: { ...bearer(await token()), origin: 'https://evil.example' } })
      assert.equal(stranger.headers['access-control-allow-origin'], undefined)
    })

    it('an API key reaches the service as its consumer; the key does not', async () => {
      const reply = await request(`${base}/partners/x`, { headers: { 'x-api-key': 'key-billing', 'x-consumer': 'admin' } })
      assert.equal(reply.status, 200)
      assert.equal(reply.json().headers['x-consumer'], 'billing')
      assert.equal(reply.json().headers['x-api-key'], undefined)
    })

    it('missing and unknown API keys get 401', async () => {
      const missing = await request(`${base}/partners/x`)
      assert.equal(missing.status, 401)
      assert.match(String(missing.headers['www-authenticate']), /^ApiKey/)
      assert.equal((await request(`${base}/partners/x`, { headers: { 'x-api-key': 'key-nobody' } })).status, 401)
    })

    it('a new keys file is picked up when it is renamed into place', async () => {
      const next = `${keysFile}.next`
      writeFileSync(next, JSON.stringify({ [sha('key-billing')]: 'billing', [sha('key-shipping')]: 'shipping' }))
      renameSync(next, keysFile)
      await gateway.waitForLine(/API keys loaded.*"keys":2/, 'stderr')
      const reply = await request(`${base}/partners/x`, { headers: { 'x-api-key': 'key-shipping' } })
      assert.equal(reply.status, 200)
      assert.equal(reply.json().headers['x-consumer'], 'shipping')
    })

    it('secure headers are added and the stack-revealing headers stripped', async () => {
      const reply = await request(`${base}/partners/x`, { headers: { 'x-api-key': 'key-billing' } })
      assert.equal(reply.headers['x-content-type-options'], 'nosniff')
      assert.equal(reply.headers['x-frame-options'], 'SAMEORIGIN')
      assert.equal(reply.headers.server, undefined)
      assert.equal(reply.headers['x-powered-by'], undefined)
      const error = await request(`${base}/partners/x`)
      assert.equal(error.headers['x-content-type-options'], 'nosniff', 'error answers too')
    })

    it('a JWKS outage keeps the cached keys', async () => {
      await jwks.close()
      assert.equal((await request(`${base}/orders/1`, { headers: bearer(await token()) })).status, 200)
    })
  })
}
