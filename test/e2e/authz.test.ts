// Authorization on every target: [routes.authz] on verified JWT claims and API-key consumers, and
// [routes.ext_authz] against a real authorization server (node:http) that allows, denies, is slow and
// is down.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import type { ServerResponse } from 'node:http'
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { SignJWT } from 'jose'
import { closedPort, readBody, request, startGateway, startUpstream, targets, tempDir, until, type Gateway, type Upstream } from './harness.ts'
import { makeCertificates, type TestCertificates } from './security-helpers.ts'

const SECRET = 'authz-e2e-secret-of-at-least-32-bytes!'
const sha = (key: string) => createHash('sha256').update(key).digest('hex')

function token(claims: Record<string, unknown>) {
  return new SignJWT({ sub: 'alice', ...claims })
    .setProtectedHeader({ alg: 'HS256' })
    .setExpirationTime('5m')
    .sign(new TextEncoder().encode(SECRET))
}

/** The authorization service. Its answer depends on the Authorization header the gateway passes on. */
async function startAuthorizer(held: ServerResponse[]) {
  return startUpstream(async (req, res) => {
    const body = (await readBody(req)).toString()
    const authorization = req.headers.authorization ?? ''
    if (authorization === 'Bearer slow') {
      held.push(res) // answered when the test ends: the gateway's timeout must act first
      return
    }
    if (authorization.startsWith('Bearer ok')) {
      res.writeHead(200, { 'x-user-id': `u${authorization.slice(9)}`, 'x-seen-uri': String(req.headers['x-forwarded-uri']) })
      res.end(JSON.stringify({ method: req.headers['x-forwarded-method'], uri: req.headers['x-forwarded-uri'], body }))
      return
    }
    if (authorization === 'Bearer echo') {
      res.writeHead(403, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ method: req.method, forwardedMethod: req.headers['x-forwarded-method'], body, cookie: req.headers.cookie ?? null }))
      return
    }
    res.writeHead(401, { 'www-authenticate': 'Bearer realm="orders"', 'x-internal': 'secret', 'content-type': 'application/json' })
    res.end(JSON.stringify({ error: 'who are you?' }))
  })
}

/** An authorizer over TLS, its certificate signed by the test's own CA: allows and names the user. */
async function startTlsAuthorizer(certs: TestCertificates): Promise<{ server: HttpsServer; url: string }> {
  const server = createHttpsServer({ cert: readFileSync(certs.serverCert), key: readFileSync(certs.serverKey) }, (req, res) => {
    res.writeHead(req.headers.authorization === 'Bearer tls' ? 200 : 403, { 'x-user-id': 'u-tls' }).end()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/check` }
}

function policy(upstream: Upstream, authorizer: Upstream, keysFile: string, down: number, tls: { url: string; ca: string }) {
  return `
[gateway]
service = "authz-e2e"
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
jwt = { secret_env = "AUTHZ_JWT_SECRET" }

[routes.authz]
claims = { tenant = "acme" }

[[routes.authz.rules]]
name = "health"
paths = ["/orders/health"]

[[routes.authz.rules]]
name = "read"
methods = ["GET"]
claims = { scope = "orders:read", "realm_access.roles" = ["clerk", "admin"] }

[[routes.authz.rules]]
name = "write"
methods = ["POST", "PUT"]
paths = ["/orders/:id"]
claims = { scope = { all_of = ["orders:read", "orders:write"] } }

[[routes]]
name = "billing"
listener = "in"
path = "/billing/*"
upstream = "echo"
api_key = { keys_file = "${keysFile}" }
authz = { consumers = ["billing"] }

[[routes]]
name = "dry"
listener = "in"
path = "/dry/*"
upstream = "echo"
jwt = { secret_env = "AUTHZ_JWT_SECRET" }
authz = { mode = "dry_run", claims = { scope = "admin" } }

[[routes]]
name = "ext"
listener = "in"
path = "/ext/*"
upstream = "echo"

[routes.ext_authz]
url = "${authorizer.url}/check"
headers = ["authorization", "cookie"]
upstream_headers = ["x-user-id"]
client_headers = ["www-authenticate", "content-type"]
timeout = "1s"
include_body = 5
cache = { key = "\${header.authorization} \${method} \${path}", ttl = "1m" }

[[routes]]
name = "ext-open"
listener = "in"
path = "/ext-open/*"
upstream = "echo"
ext_authz = { url = "http://127.0.0.1:${down}/check", on_error = "allow", upstream_headers = ["x-user-id"] }

[[routes]]
name = "ext-down"
listener = "in"
path = "/ext-down/*"
upstream = "echo"
ext_authz = { url = "http://127.0.0.1:${down}/check" }

[[routes]]
name = "ext-tls"
listener = "in"
path = "/ext-tls/*"
upstream = "echo"
ext_authz = { url = "${tls.url}", ca = "${tls.ca}", upstream_headers = ["x-user-id"], timeout = "5s" }

[[routes]]
name = "ext-tls-untrusted"
listener = "in"
path = "/ext-tls-untrusted/*"
upstream = "echo"
ext_authz = { url = "${tls.url}", timeout = "2s" }
`
}

for (const target of targets()) {
  describe(`authz and ext_authz on ${target.name}`, { skip: target.missing }, () => {
    let upstream: Upstream
    let authorizer: Upstream
    let tlsAuthorizer: { server: HttpsServer; url: string }
    let gateway: Gateway
    let base: string
    let calls = 0
    const held: ServerResponse[] = []

    before(async () => {
      upstream = await startUpstream(async (req, res) => {
        calls++
        const body = (await readBody(req)).toString()
        res.setHeader('content-type', 'application/json')
        res.end(JSON.stringify({ url: req.url, headers: req.headers, body }))
      })
      authorizer = await startAuthorizer(held)
      const certs = makeCertificates()
      tlsAuthorizer = await startTlsAuthorizer(certs)
      const keysFile = join(tempDir(), 'consumers.json')
      writeFileSync(keysFile, JSON.stringify({ [sha('key-billing')]: 'billing', [sha('key-reports')]: 'reports' }))
      gateway = await startGateway(target, policy(upstream, authorizer, keysFile, await closedPort(), { url: tlsAuthorizer.url, ca: certs.caCert }), { AUTHZ_JWT_SECRET: SECRET })
      base = gateway.listeners.in!
    })

    after(async () => {
      for (const res of held) res.end()
      const code = await gateway?.stop()
      await upstream?.close()
      await authorizer?.close()
      tlsAuthorizer?.server.closeAllConnections()
      await new Promise((resolve) => tlsAuthorizer?.server.close(resolve))
      assert.equal(code, 0, `gateway exit code; stderr:\n${gateway?.stderr.join('\n')}`)
    })

    const bearer = async (claims: Record<string, unknown>) => ({ authorization: `Bearer ${await token(claims)}` })
    const reader = { tenant: 'acme', scope: 'orders:read', realm_access: { roles: ['clerk'] } }

    it('claims: the route-wide requirement, then the first rule that matches; scope strings are sets, nested roles by path', async () => {
      assert.equal((await request(`${base}/orders/7`, { headers: await bearer(reader) })).status, 200)
      assert.equal((await request(`${base}/orders/health`, { headers: await bearer({ tenant: 'acme' }) })).status, 200, 'public rule')
      const writer = { ...reader, scope: 'orders:read orders:write' }
      assert.equal((await request(`${base}/orders/7`, { method: 'PUT', headers: await bearer(writer), body: '{}' })).status, 200)
      assert.equal((await request(`${base}/orders/7`, { headers: await bearer({ ...reader, realm_access: { roles: ['viewer'] } }) })).status, 403)
    })

    it('a refusal is 403 forbidden with an insufficient_scope challenge, and the service never sees it', async () => {
      const before = calls
      const reply = await request(`${base}/orders/7`, { method: 'PUT', headers: await bearer(reader), body: '{}' })
      assert.equal(reply.status, 403)
      assert.equal(reply.json().code, 'forbidden')
      assert.ok(reply.json().request_id)
      assert.equal(reply.headers['www-authenticate'], 'Bearer error="insufficient_scope", scope="orders:read orders:write"')
      const otherTenant = await request(`${base}/orders/7`, { headers: await bearer({ ...reader, tenant: 'evil' }) })
      assert.equal(otherTenant.status, 403)
      const noRule = await request(`${base}/orders/7`, { method: 'DELETE', headers: await bearer(reader) })
      assert.equal(noRule.status, 403)
      assert.equal(calls, before)
    })

    it('consumers: the API key must belong to a listed consumer; no bearer token, no challenge', async () => {
      assert.equal((await request(`${base}/billing/x`, { headers: { 'x-api-key': 'key-billing' } })).status, 200)
      const reply = await request(`${base}/billing/x`, { headers: { 'x-api-key': 'key-reports' } })
      assert.equal(reply.status, 403)
      assert.equal(reply.headers['www-authenticate'], undefined)
    })

    it('dry run lets the request through, and logs and counts what it would have refused', async () => {
      const reply = await request(`${base}/dry/x`, { headers: await bearer({ scope: 'user' }) })
      assert.equal(reply.status, 200)
      await gateway.waitForLine(/authz would have refused \(dry run\).*"rule":"route"/, 'stderr')
      await gateway.waitForLine(/"route":"dry".*"authz":"dry_run:route"/)
    })

    it('metrics and the access log name the rule that refused', async () => {
      await gateway.waitForLine(/"route":"orders".*"status":403.*"authz":"write"/)
      await gateway.waitForLine(/"route":"billing".*"authz":"route"/)
      const metrics = await until('authz metrics', async () => {
        const text = (await request(`${gateway.admin}/metrics`)).body.toString()
        return text.includes('pillion_authz_refusals_total{route="dry"') ? text : undefined
      })
      assert.match(metrics, /pillion_authz_refusals_total\{route="orders",rule="write",mode="enforce"\} 1\n/)
      assert.match(metrics, /pillion_authz_refusals_total\{route="orders",rule="route",mode="enforce"\} 1\n/)
      assert.match(metrics, /pillion_authz_refusals_total\{route="orders",rule="unmatched",mode="enforce"\} 1\n/)
      assert.match(metrics, /pillion_authz_refusals_total\{route="orders",rule="read",mode="enforce"\} 1\n/)
      assert.match(metrics, /pillion_authz_refusals_total\{route="dry",rule="route",mode="dry_run"\} 1\n/)
    })

    it('ext_authz: a 2xx allows and its listed headers reach the upstream in place of the client\'s', async () => {
      const reply = await request(`${base}/ext/items?page=2`, { method: 'POST', headers: { authorization: 'Bearer ok-1', 'x-user-id': 'forged' }, body: 'hello world' })
      assert.equal(reply.status, 200)
      const seen = reply.json()
      assert.equal(seen.headers['x-user-id'], 'u-1')
      assert.equal(seen.headers['x-seen-uri'], undefined, 'only upstream_headers are copied')
      assert.equal(seen.body, 'hello world', 'the upstream gets the whole body after the authorizer saw its first bytes')
    })

    it('ext_authz: the authorizer sees method, path and the first include_body bytes; a denial comes back as it answered', async () => {
      const reply = await request(`${base}/ext/items`, { method: 'POST', headers: { authorization: 'Bearer echo', cookie: 'sid=9' }, body: 'abcdefgh' })
      assert.equal(reply.status, 403)
      assert.deepEqual(reply.json(), { method: 'POST', forwardedMethod: 'POST', body: 'abcde', cookie: 'sid=9' })
      const denied = await request(`${base}/ext/items`, { headers: { authorization: 'Bearer nobody' } })
      assert.equal(denied.status, 401)
      assert.equal(denied.headers['www-authenticate'], 'Bearer realm="orders"')
      assert.equal(denied.headers['x-internal'], undefined)
      assert.deepEqual(denied.json(), { error: 'who are you?' })
    })

    it('ext_authz: decisions are cached by key; a slow authorizer times out into 503 authz_unavailable', async () => {
      const first = await request(`${base}/ext/cached`, { headers: { authorization: 'Bearer ok-c' } })
      const again = await request(`${base}/ext/cached`, { headers: { authorization: 'Bearer ok-c' } })
      assert.equal(first.status, 200)
      assert.equal(again.status, 200)
      const slow = await request(`${base}/ext/x`, { headers: { authorization: 'Bearer slow' } })
      assert.equal(slow.status, 503)
      assert.equal(slow.json().code, 'authz_unavailable')
      const metrics = await until('ext_authz metrics', async () => {
        const text = (await request(`${gateway.admin}/metrics`)).body.toString()
        return /pillion_ext_authz_decisions_total\{route="ext",result="error_denied"\} 1\n/.test(text) ? text : undefined
      })
      assert.match(metrics, /pillion_ext_authz_cache_hits_total\{route="ext"\} 1\n/)
      assert.match(metrics, /pillion_ext_authz_decisions_total\{route="ext",result="allowed"\} 3\n/)
      await gateway.waitForLine(/authorization service failed; refusing requests.*"error":"timeout"/, 'stderr')
    })

    it('ext_authz down: on_error = "deny" answers 503, "allow" goes on without the client\'s copy of the upstream headers', async () => {
      const before = calls
      const denied = await request(`${base}/ext-down/x`)
      assert.equal(denied.status, 503)
      assert.equal(denied.json().code, 'authz_unavailable')
      assert.equal(calls, before)
      const open = await request(`${base}/ext-open/x`, { headers: { 'x-user-id': 'forged' } })
      assert.equal(open.status, 200)
      assert.equal(open.json().headers['x-user-id'], undefined)
      await gateway.waitForLine(/authorization service failed; letting requests through/, 'stderr')
      await gateway.waitForLine(/"route":"ext-open".*"authz":"ext_authz:failed_open"/)
    })

    it('ext_authz over https, trusting the authorizer\'s CA given in ca', async () => {
      const allowed = await request(`${base}/ext-tls/x`, { headers: { authorization: 'Bearer tls' } })
      assert.equal(allowed.status, 200)
      assert.equal(allowed.json().headers['x-user-id'], 'u-tls')
      assert.equal((await request(`${base}/ext-tls/x`, { headers: { authorization: 'Bearer tls-no' } })).status, 403)
      const untrusted = await request(`${base}/ext-tls-untrusted/x`, { headers: { authorization: 'Bearer tls' } })
      assert.equal(untrusted.status, 503, 'without ca, the system CAs do not know the test CA')
      assert.equal(untrusted.json().code, 'authz_unavailable')
    })
  })
}
