import assert from 'node:assert/strict'
import { renameSync, writeFileSync } from 'node:fs'
import { Agent, request as httpRequest } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { closedPort, request, startGateway, startUpstream, targets, type Gateway, type Upstream, until } from './harness.ts'

interface Variant {
  upstream: string
  timeout?: string
  ingressPort?: number
  breaker?: boolean
  broken?: boolean
}

function policy(v: Variant): string {
  return `
[gateway]
service = "reload"
admin = "127.0.0.1:0"

[listeners.ingress]
listen = "127.0.0.1:${v.ingressPort ?? 0}"
direction = "${v.broken ? 'sideways' : 'ingress'}"

[upstreams.one]
endpoints = ["${v.upstream}"]

[upstreams.failing]
endpoints = ["http://127.0.0.1:${failingPort}"]

[[routes]]
name = "flaky"
listener = "ingress"
path = "/flaky/*"
upstream = "failing"
${v.breaker === false ? '' : '[routes.circuit_breaker]\nmin_requests = 2\nfailure_rate = 0.5\nopen_for = "10m"\nwindow_requests = 2'}

[[routes]]
name = "main"
listener = "ingress"
path = "/*"
upstream = "one"
timeout = "${v.timeout ?? '5s'}"
`
}

let failingPort = 0

/** Replaces the policy file the way editors and ConfigMaps do: a new file renamed over the old one. */
function replaceFile(file: string, text: string): void {
  const temp = `${file}.tmp-${process.hrtime.bigint()}`
  writeFileSync(temp, text)
  renameSync(temp, file)
}


for (const target of targets()) {
  describe(`hot reload on ${target.name}`, { skip: target.missing }, () => {
    let first: Upstream
    let second: Upstream
    let gateway: Gateway
    let file: string

    before(async () => {
      failingPort = await closedPort()
      first = await startUpstream((_req, res) => res.end('first'))
      second = await startUpstream((_req, res) => res.end('second'))
      gateway = await startGateway(target, policy({ upstream: first.url }))
      file = gateway.policyFile
    })

    after(async () => {
      await gateway?.stop()
      await first?.close()
      await second?.close()
    })

    it('applies a changed file without a restart', async () => {
      const base = gateway.listeners.ingress!
      assert.equal((await request(`${base}/x`)).body.toString(), 'first')
      replaceFile(file, policy({ upstream: second.url }))
      await until('traffic to the second upstream', async () => ((await request(`${base}/x`)).body.toString() === 'second' ? true : undefined))
      const status = (await request(`${gateway.admin}/config/status`)).json()
      assert.equal(status.lastReload.ok, true)
      assert.equal(status.lastReload.trigger, 'file')
    })

    it('rejects an invalid change, keeps the running config, and says why', async () => {
      const before = (await request(`${gateway.admin}/config/status`)).json()
      replaceFile(file, policy({ upstream: second.url, broken: true }))
      const status = await until('the rejected reload', async () => {
        const s = (await request(`${gateway.admin}/config/status`)).json()
        return s.lastReload && !s.lastReload.ok ? s : undefined
      })
      assert.equal(status.version, before.version, 'the running version is unchanged')
      assert.deepEqual(status.lastReload.problems.map((p: { path: string }) => p.path), ['listeners.ingress.direction'])
      assert.equal((await request(`${gateway.listeners.ingress}/x`)).body.toString(), 'second')
      await gateway.waitForLine(/config reload rejected/, 'stderr')
      replaceFile(file, policy({ upstream: second.url }))
      await until('the good file back', async () => ((await request(`${gateway.admin}/config/status`)).json().lastReload.ok ? true : undefined))
    })

    it('reloads on SIGHUP and on POST /reload', async () => {
      writeFileSync(file, policy({ upstream: first.url }))
      const answer = await request(`${gateway.admin}/reload`, { method: 'POST' })
      assert.equal(answer.status, 200)
      assert.equal(answer.json().ok, true)
      assert.equal((await request(`${gateway.listeners.ingress}/x`)).body.toString(), 'first')
      writeFileSync(file, policy({ upstream: second.url }))
      gateway.process.kill('SIGHUP')
      await until('the SIGHUP reload', async () => ((await request(`${gateway.listeners.ingress}/x`)).body.toString() === 'second' ? true : undefined))
    })

    it('keeps breaker state across a reload that leaves the breaker alone', async () => {
      const base = gateway.listeners.ingress!
      for (let i = 0; i < 2; i++) await request(`${base}/flaky/x`)
      const open = (await request(`${base}/flaky/x`)).json()
      assert.equal(open.code, 'circuit_open')
      writeFileSync(file, policy({ upstream: first.url, timeout: '6s' }))
      assert.equal((await request(`${gateway.admin}/reload`, { method: 'POST' })).json().changed, true)
      assert.equal((await request(`${base}/flaky/x`)).json().code, 'circuit_open', 'the open breaker survived')
      writeFileSync(file, policy({ upstream: first.url, timeout: '6s', breaker: false }))
      await request(`${gateway.admin}/reload`, { method: 'POST' })
      assert.equal((await request(`${base}/flaky/x`)).json().code, 'upstream_unavailable', 'no breaker any more')
    })

    it('moves a listener to a new address', async () => {
      const port = await closedPort()
      writeFileSync(file, policy({ upstream: first.url, ingressPort: port }))
      assert.equal((await request(`${gateway.admin}/reload`, { method: 'POST' })).status, 200)
      assert.equal((await request(`http://127.0.0.1:${port}/x`)).body.toString(), 'first')
      const old = gateway.listeners.ingress!
      await until('the old address to close', async () => (await request(`${old}/x`).then(() => undefined, () => true)))
      gateway.listeners.ingress = `http://127.0.0.1:${port}`
    })

    it('reloads 50 times under steady load without failing a request', { timeout: 60_000 }, async () => {
      const base = gateway.listeners.ingress!
      const agent = new Agent({ keepAlive: true, maxSockets: 8 })
      let stop = false
      let ok = 0
      const failures: string[] = []
      const client = async () => {
        while (!stop) {
          const outcome = await new Promise<string>((resolve) => {
            httpRequest(`${base}/load`, { agent }, (res) => {
              res.resume()
              res.on('end', () => resolve(String(res.statusCode)))
            })
              .on('error', (error) => resolve(String(error)))
              .end()
          })
          if (outcome === '200') ok++
          else failures.push(outcome)
        }
      }
      const clients = Array.from({ length: 8 }, client)
      for (let i = 0; i < 50; i++) {
        writeFileSync(file, policy({ upstream: i % 2 ? first.url : second.url, timeout: `${5 + (i % 3)}s`, ingressPort: Number(new URL(base).port) }))
        const answer = (await request(`${gateway.admin}/reload`, { method: 'POST' })).json()
        assert.equal(answer.ok, true, JSON.stringify(answer))
      }
      stop = true
      await Promise.all(clients)
      agent.destroy()
      assert.deepEqual(failures, [])
      assert.ok(ok > 50, `${ok} requests went through`)
      const status = (await request(`${gateway.admin}/config/status`)).json()
      assert.ok(status.reloads.succeeded >= 50)
    })
  })
}
