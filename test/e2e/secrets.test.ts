// Secrets out of the file: an endpoint from ${env:…} and a header value from ${file:…} work, and
// GET /config shows them redacted. And answers that name no internals: a refused connection tells
// the client the kind of failure, while the error log keeps the endpoint.
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { closedPort, request, startGateway, startUpstream, targets, tempDir, type Gateway, type Upstream } from './harness.ts'

const TOKEN = 'partner-token-from-a-mounted-file'

const policy = (tokenFile: string, deadPort: number) => `
[gateway]
service = "secrets"
admin = "127.0.0.1:0"

[listeners.in]
listen = "127.0.0.1:0"
direction = "ingress"

[upstreams.echo]
endpoints = ["\${env:PILLION_E2E_UPSTREAM}"]

[upstreams.dead]
endpoints = ["http://127.0.0.1:${deadPort}"]

[[routes]]
name = "dead"
listener = "in"
path = "/dead/*"
upstream = "dead"

[[routes]]
name = "echo"
listener = "in"
path = "/*"
upstream = "echo"
request_headers = { set = { "x-partner" = "Bearer \${file:${tokenFile}}", "x-route" = "\${route}", "x-literal" = "$$\${env:X}" } }
`

for (const target of targets()) {
  describe(`secrets and error answers on ${target.name}`, { skip: target.missing }, () => {
    let upstream: Upstream
    let gateway: Gateway
    let deadPort: number

    before(async () => {
      upstream = await startUpstream((req, res) => {
        res.setHeader('content-type', 'application/json')
        res.end(JSON.stringify({ partner: req.headers['x-partner'], route: req.headers['x-route'], literal: req.headers['x-literal'] }))
      })
      const dir = tempDir()
      const tokenFile = join(dir, 'partner-token')
      writeFileSync(tokenFile, `${TOKEN}\n`)
      deadPort = await closedPort()
      gateway = await startGateway(target, policy(tokenFile, deadPort), { PILLION_E2E_UPSTREAM: upstream.url })
    })

    after(async () => {
      const code = await gateway?.stop()
      await upstream?.close()
      assert.equal(code, 0, `gateway exit code; stderr:\n${gateway?.stderr.join('\n')}`)
    })

    it('sends to the endpoint from ${env:…} with the header from ${file:…}; header templates still work', async () => {
      const reply = await request(`${gateway.listeners.in}/hello`)
      assert.equal(reply.status, 200)
      assert.deepEqual(reply.json(), { partner: `Bearer ${TOKEN}`, route: 'echo', literal: '${env:X}' })
    })

    it('GET /config shows neither value', async () => {
      const reply = await request(`${gateway.admin}/config`)
      assert.equal(reply.status, 200)
      const text = reply.body.toString()
      assert.ok(!text.includes(upstream.url), text)
      assert.ok(!text.includes(TOKEN), text)
      const config = reply.json()
      assert.deepEqual(config.upstreams.echo.endpoints.map((endpoint: { url: string }) => endpoint.url), ['[redacted]'])
      assert.equal(config.secrets, undefined)
      assert.equal(config.routes[1].policies.requestHeaders.set['x-route'], '${route}')
    })

    it('a refused connection answers with its kind, not the address; the error log keeps the address', async () => {
      const reply = await request(`${gateway.listeners.in}/dead/x`, { headers: { 'x-request-id': 'secrets-dead-1' } })
      assert.equal(reply.status, 502)
      const body = reply.json()
      assert.equal(body.code, 'upstream_unavailable')
      assert.match(body.message, /^the upstream could not be reached \(connect-failure\)$/)
      assert.ok(!reply.body.toString().includes(String(deadPort)), reply.body.toString())
      const line = JSON.parse(await gateway.waitForLine(/"request_id":"secrets-dead-1"/, 'stderr'))
      assert.equal(line.level, 'warn')
      assert.equal(line.endpoint, `http://127.0.0.1:${deadPort}`)
      assert.match(line.detail, new RegExp(`^upstream http://127\\.0\\.0\\.1:${deadPort} failed: (connect-failure|connect-timeout|reset)`))
    })
  })
}
