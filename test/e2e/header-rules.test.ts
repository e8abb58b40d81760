// request_headers and response_headers through the gateway as each runtime runs it: what a real
// upstream receives (variables from the JWT, the API-key consumer, the split's choice, the client),
// what the shadow copy of a mirror receives, and what the client gets, the gateway's errors included.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import type { IncomingHttpHeaders } from 'node:http'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { SignJWT } from 'jose'
import { closedPort, request, startGateway, startUpstream, targets, tempDir, until, type Gateway, type Upstream } from './harness.ts'

const SECRET = 'header-rules-e2e-secret-of-at-least-32-bytes'
const sha = (key: string) => createHash('sha256').update(key).digest('hex')

function token(claims: Record<string, unknown>) {
  return new SignJWT({ iss: 'https://auth.example', ...claims })
    .setProtectedHeader({ alg: 'HS256' })
    .setExpirationTime('5m')
    .sign(new TextEncoder().encode(SECRET))
}

function policy(echo: Upstream, canary: Upstream, shadow: Upstream, downPort: number, keysFile: string) {
  return `
[gateway]
service = "headers"
admin = "127.0.0.1:0"

[listeners.in]
listen = "127.0.0.1:0"
direction = "ingress"

[upstreams.echo]
endpoints = ["${echo.url}"]

[upstreams.canary]
endpoints = ["${canary.url}"]

[upstreams.shadow]
endpoints = ["${shadow.url}"]

[upstreams.down]
endpoints = ["http://127.0.0.1:${downPort}"]

[defaults.response_headers]
set = { "cache-control" = "no-store", "x-served-by" = "\${route}/\${upstream}" }
remove = ["server"]

[[routes]]
name = "orders"
listener = "in"
path = "/orders/*"
upstream = "echo"
mirror = { upstream = "shadow" }

[routes.jwt]
secret_env = "HEADER_RULES_SECRET"
issuer = "https://auth.example"

[routes.request_headers]
set = { "x-user" = "\${jwt.sub}", "x-roles" = "\${jwt.realm_access.roles}", "x-client" = "\${client_ip}", "x-request" = "\${request_id}", "x-where" = "\${route} via \${upstream}", "x-tenant-copy" = "tenant=\${header.x-tenant}", "x-literal" = "$\${jwt.sub}" }
add = { "x-tags" = "gateway" }
remove = ["cookie"]

[[routes]]
name = "partners"
listener = "in"
path = "/partners/*"
upstream = "echo"
api_key = { keys_file = "${keysFile}" }
request_headers = { set = { "x-caller" = "\${consumer}" } }
response_headers = { add = { "x-consumer" = "\${consumer}" } }

[[routes]]
name = "versions"
listener = "in"
path = "/versions/*"
request_headers = { set = { "x-upstream" = "\${upstream}" } }

[[routes.split]]
upstream = "echo"
weight = 0

[[routes.split]]
upstream = "canary"
weight = 1

[[routes]]
name = "down"
listener = "in"
path = "/down/*"
upstream = "down"
`
}

/** An upstream that answers with the headers it received, and says who it is. */
function echoing(name: string, seen: IncomingHttpHeaders[] = []) {
  return startUpstream((req, res) => {
    seen.push(req.headers)
    res.setHeader('server', `${name}/1.0`)
    res.setHeader('cache-control', 'max-age=60')
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ upstream: name, headers: req.headers }))
  })
}

for (const target of targets()) {
  describe(`request_headers and response_headers on ${target.name}`, { skip: target.missing }, () => {
    let echo: Upstream
    let canary: Upstream
    let shadow: Upstream
    const shadowSeen: IncomingHttpHeaders[] = []
    let gateway: Gateway
    let base: string

    before(async () => {
      echo = await echoing('echo')
      canary = await echoing('canary')
      shadow = await echoing('shadow', shadowSeen)
      const keysFile = join(tempDir(), 'consumers.json')
      writeFileSync(keysFile, JSON.stringify({ [sha('key-billing')]: 'billing' }))
      gateway = await startGateway(target, policy(echo, canary, shadow, await closedPort(), keysFile), { HEADER_RULES_SECRET: SECRET })
      base = gateway.listeners.in!
    })

    after(async () => {
      const code = await gateway?.stop()
      await Promise.all([echo?.close(), canary?.close(), shadow?.close()])
      assert.equal(code, 0, `gateway exit code; stderr:\n${gateway?.stderr.join('\n')}`)
    })

    it('the upstream gets set, added and removed headers with the request’s variables', async () => {
      const jwt = await token({ sub: 'alice', realm_access: { roles: ['admin', 'ops'] } })
      const reply = await request(`${base}/orders/1`, {
        headers: { authorization: `Bearer ${jwt}`, 'x-user': 'mallory', 'x-tags': 'client', cookie: 'session=1', 'x-tenant': 'acme', 'x-request-id': 'hdr-e2e-1' },
      })
      assert.equal(reply.status, 200)
      const seen = reply.json().headers
      assert.equal(seen['x-user'], 'alice', "set replaces the client's header")
      assert.equal(seen['x-roles'], '["admin","ops"]')
      assert.match(seen['x-client'], /^(::ffff:)?127\.0\.0\.1$/)
      assert.equal(seen['x-request'], 'hdr-e2e-1')
      assert.equal(seen['x-where'], 'orders via echo')
      assert.equal(seen['x-tenant-copy'], 'tenant=acme')
      assert.equal(seen['x-literal'], '${jwt.sub}')
      assert.equal(seen['x-tags'], 'client, gateway', 'add keeps what the client sent')
      assert.equal(seen.cookie, undefined)
      assert.equal(seen.authorization, undefined, 'jwt still drops the token')
    })

    it('a claim the token lacks removes the header the client sent', async () => {
      const reply = await request(`${base}/orders/1`, { headers: { authorization: `Bearer ${await token({ sub: 'bob' })}`, 'x-roles': 'admin' } })
      assert.equal(reply.status, 200)
      assert.equal(reply.json().headers['x-roles'], undefined)
    })

    it('the mirror’s shadow copy gets the same headers', async () => {
      const before = shadowSeen.length
      await request(`${base}/orders/2`, { headers: { authorization: `Bearer ${await token({ sub: 'carol' })}` } })
      const copy = await until('the shadow copy', async () => shadowSeen.slice(before).find((headers) => headers['x-user'] === 'carol'))
      assert.equal(copy['x-where'], 'orders via echo')
      assert.equal(copy['x-pillion-shadow'], '1')
    })

    it('the client gets the response rules from [defaults]', async () => {
      const reply = await request(`${base}/orders/1`, { headers: { authorization: `Bearer ${await token({ sub: 'alice' })}` } })
      assert.equal(reply.status, 200)
      assert.equal(reply.headers['cache-control'], 'no-store', "set replaces the upstream's")
      assert.equal(reply.headers['x-served-by'], 'orders/echo')
      assert.equal(reply.headers.server, undefined)
    })

    it('a gateway error answer from a policy (401 from jwt) carries them too', async () => {
      const reply = await request(`${base}/orders/1`)
      assert.equal(reply.status, 401)
      assert.equal(reply.json().code, 'unauthorized')
      assert.equal(reply.headers['www-authenticate'], 'Bearer')
      assert.equal(reply.headers['cache-control'], 'no-store')
      assert.equal(reply.headers['x-served-by'], 'orders/echo')
    })

    it('and so does the answer when the upstream cannot be reached (502)', async () => {
      const reply = await request(`${base}/down/1`)
      assert.equal(reply.status, 502)
      assert.equal(reply.headers['x-pillion-error'], 'upstream_unavailable')
      assert.equal(reply.headers['cache-control'], 'no-store')
      assert.equal(reply.headers['x-served-by'], 'down/down')
    })

    it('${consumer} is the API key’s consumer, both ways; the route’s own table replaces the default’s', async () => {
      const reply = await request(`${base}/partners/1`, { headers: { 'x-api-key': 'key-billing', 'x-caller': 'spoofed' } })
      assert.equal(reply.status, 200)
      assert.equal(reply.json().headers['x-caller'], 'billing')
      assert.equal(reply.headers['x-consumer'], 'billing')
      assert.equal(reply.headers['cache-control'], 'max-age=60', 'the default rules do not apply')
      assert.equal(reply.headers.server, 'echo/1.0')
    })

    it('${upstream} is the one the split chose', async () => {
      const reply = await request(`${base}/versions/1`)
      assert.equal(reply.status, 200)
      const body = reply.json()
      assert.equal(body.upstream, 'canary')
      assert.equal(body.headers['x-upstream'], 'canary')
      assert.equal(reply.headers['x-served-by'], 'versions/canary')
    })
  })
}
