// The admin listener's lock-down: loopback unless a token is required, bearer token checks, and a
// /config that shows no secrets.
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { request, runPillion, startGateway, startUpstream, targets, tempDir, type Gateway, type Upstream } from './harness.ts'

const TOKEN = 'admin-token-0123456789abcdef'

const policy = (upstream: Upstream, gateway = '') => `
[gateway]
service = "locked"
admin = "127.0.0.1:0"
admin_token_env = "PILLION_E2E_ADMIN_TOKEN"
${gateway}

[listeners.in]
listen = "127.0.0.1:0"
direction = "ingress"

[upstreams.echo]
endpoints = ["${upstream.url}"]

[[routes]]
name = "internal"
listener = "in"
path = "/internal/*"
headers = { authorization = "Bearer route-match-secret" }
upstream = "echo"
jwt = { secret_env = "PILLION_E2E_JWT_SECRET" }
`

for (const target of targets()) {
  describe(`admin lock-down on ${target.name}`, { skip: target.missing }, () => {
    let upstream: Upstream
    let gateway: Gateway

    before(async () => {
      upstream = await startUpstream((_req, res) => res.end('ok'))
      gateway = await startGateway(target, policy(upstream), {
        PILLION_E2E_ADMIN_TOKEN: TOKEN,
        PILLION_E2E_JWT_SECRET: 'jwt-secret-value-of-at-least-32-bytes!!',
      })
    })

    after(async () => {
      const code = await gateway?.stop()
      await upstream?.close()
      assert.equal(code, 0, `gateway exit code; stderr:\n${gateway?.stderr.join('\n')}`)
    })

    it('health and readiness stay open for probes', async () => {
      assert.equal((await request(`${gateway.admin}/healthz`)).status, 200)
      assert.equal((await request(`${gateway.admin}/readyz`)).status, 200)
    })

    it('everything else needs the bearer token', async () => {
      for (const path of ['/config', '/config/status', '/upstreams', '/breakers']) {
        const none = await request(`${gateway.admin}${path}`)
        assert.equal(none.status, 401, path)
        assert.match(String(none.headers['www-authenticate']), /^Bearer/)
        assert.equal((await request(`${gateway.admin}${path}`, { headers: { authorization: 'Bearer wrong-token-0123456789' } })).status, 401, path)
        assert.equal((await request(`${gateway.admin}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200, path)
      }
      assert.equal((await request(`${gateway.admin}/reload`, { method: 'POST' })).status, 401)
    })

    it('/config shows no secret', async () => {
      const reply = await request(`${gateway.admin}/config`, { headers: { authorization: `Bearer ${TOKEN}` } })
      const text = reply.body.toString()
      assert.ok(!text.includes('route-match-secret'), 'header match value')
      assert.ok(!text.includes(TOKEN), 'admin token')
      assert.ok(!text.includes('jwt-secret-value'), 'jwt secret')
      const config = reply.json()
      assert.deepEqual(config.routes[0].headers, [['authorization', '[redacted]']])
      assert.equal(config.routes[0].policies.jwt.secretEnv, 'PILLION_E2E_JWT_SECRET', 'the variable name is not a secret')
      assert.equal(config.gateway.adminTokenEnv, 'PILLION_E2E_ADMIN_TOKEN')
    })
  })

  describe(`admin refusals on ${target.name}`, { skip: target.missing }, () => {
    it('pillion check refuses an admin listener off loopback without admin_token_env', async () => {
      const dir = tempDir()
      const file = join(dir, 'pillion.toml')
      writeFileSync(file, '[gateway]\nservice = "x"\nadmin = "0.0.0.0:9901"\n[listeners.in]\nlisten = "127.0.0.1:0"\ndirection = "ingress"\n')
      const result = await runPillion(target, ['check', file])
      assert.equal(result.code, 1)
      assert.match(result.stderr, /gateway\.admin_token_env: required when \[gateway\] admin is not a loopback address/)
      writeFileSync(file, '[gateway]\nservice = "x"\nadmin = "[::1]:9901"\n[listeners.in]\nlisten = "127.0.0.1:0"\ndirection = "ingress"\n')
      assert.equal((await runPillion(target, ['check', file])).code, 0, 'loopback needs no token')
    })

    it('pillion run refuses to start when the token variable is missing or too short', async () => {
      const upstream = await startUpstream((_req, res) => res.end())
      try {
        const missing = startGateway(target, policy(upstream), { PILLION_E2E_JWT_SECRET: 'jwt-secret-value-of-at-least-32-bytes!!' })
        await assert.rejects(missing, /PILLION_E2E_ADMIN_TOKEN \(gateway\.admin_token_env\) is not set/)
        const short = startGateway(target, policy(upstream), { PILLION_E2E_ADMIN_TOKEN: 'short', PILLION_E2E_JWT_SECRET: 'jwt-secret-value-of-at-least-32-bytes!!' })
        await assert.rejects(short, /use at least 16/)
      } finally {
        await upstream.close()
      }
    })
  })
}
