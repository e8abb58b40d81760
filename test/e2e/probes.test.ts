// The probes listener ([gateway] probes): /healthz, /readyz and /metrics without a token, for the
// kubelet and Prometheus on the pod IP, while the admin API stays behind its token; nothing else is
// there. Rebound when its address changes on reload, and bound once under --workers.
import assert from 'node:assert/strict'
import { renameSync, writeFileSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import { closedPort, request, startGateway, startUpstream, targets, until, type Gateway, type Upstream } from './harness.ts'

const TOKEN = 'admin-token-0123456789abcdef'

const policy = (upstream: Upstream, probes = '127.0.0.1:0') => `
[gateway]
service = "probed"
admin = "127.0.0.1:0"
admin_token_env = "PILLION_E2E_ADMIN_TOKEN"
probes = "${probes}"

[listeners.in]
listen = "127.0.0.1:0"
direction = "ingress"

[upstreams.echo]
endpoints = ["${upstream.url}"]

[[routes]]
listener = "in"
path = "/*"
upstream = "echo"
`

/** Replaces the policy file the way an editor or a ConfigMap update does: write beside it, rename over it. */
function replacePolicy(file: string, text: string): void {
  writeFileSync(`${file}.next`, text)
  renameSync(`${file}.next`, file)
}

for (const target of targets()) {
  describe(`probes listener on ${target.name}`, { skip: target.missing, timeout: 60_000 }, () => {
    let upstream: Upstream
    let gateway: Gateway

    before(async () => {
      upstream = await startUpstream((_req, res) => res.end('ok'))
      gateway = await startGateway(target, policy(upstream), { PILLION_E2E_ADMIN_TOKEN: TOKEN })
    })

    after(async () => {
      const code = await gateway?.stop()
      await upstream?.close()
      assert.equal(code, 0, `gateway exit code; stderr:\n${gateway?.stderr.join('\n')}`)
    })

    it('answers /healthz, /readyz and /metrics without the token, where the admin listener asks for it', async () => {
      assert.match(gateway.probes, /^http:\/\/127\.0\.0\.1:\d+$/)
      assert.notEqual(gateway.probes, gateway.admin)
      assert.equal((await request(`${gateway.listeners.in}/hello`)).status, 200)

      assert.deepEqual((await request(`${gateway.probes}/healthz`)).json(), { status: 'ok' })
      const ready = await request(`${gateway.probes}/readyz`)
      assert.equal(ready.status, 200)
      assert.deepEqual(ready.json(), { ready: true })
      const metrics = await request(`${gateway.probes}/metrics`)
      assert.equal(metrics.status, 200)
      assert.match(String(metrics.headers['content-type']), /^text\/plain/)
      // The request above is counted once its answer is done, which may be just after the client saw it.
      await until('the request in /metrics', async () => {
        const text = (await request(`${gateway.probes}/metrics`)).body.toString()
        return /^pillion_requests_total\{[^}]*route="route-0"[^}]*\} 1$/m.test(text) ? true : undefined
      })

      assert.equal((await request(`${gateway.admin}/metrics`)).status, 401)
      assert.equal((await request(`${gateway.admin}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200)
    })

    it('answers HEAD on the same paths', async () => {
      for (const path of ['/healthz', '/readyz', '/metrics']) {
        const head = await request(`${gateway.probes}${path}`, { method: 'HEAD' })
        assert.equal(head.status, 200, path)
        assert.equal(head.body.length, 0, path)
      }
    })

    it('has nothing else: the admin API is 404 there, token or not', async () => {
      const asked: Array<[string, string]> = [
        ['GET', '/config'],
        ['GET', '/config/status'],
        ['POST', '/reload'],
        ['GET', '/'],
        ['GET', '/stats'],
        ['GET', '/breakers'],
        ['GET', '/upstreams'],
        ['POST', '/healthz'],
        ['DELETE', '/metrics'],
      ]
      for (const [method, path] of asked) {
        for (const headers of [{}, { authorization: `Bearer ${TOKEN}` }] as Array<Record<string, string>>) {
          const reply = await request(`${gateway.probes}${path}`, { method, headers })
          assert.equal(reply.status, 404, `${method} ${path}`)
          assert.equal(reply.json().code, 'not_found', `${method} ${path}`)
        }
      }
    })

    it('is rebound when its address changes on reload', async () => {
      const port = await closedPort()
      const old = gateway.probes
      replacePolicy(gateway.policyFile, policy(upstream, `127.0.0.1:${port}`))
      await gateway.waitForLine(new RegExp(`probes on http://127\\.0\\.0\\.1:${port}$`))
      assert.equal((await request(`http://127.0.0.1:${port}/readyz`)).status, 200)
      // The old socket stops accepting once the new config is in service.
      await until('the old probes address to close', async () => {
        try {
          await request(`${old}/healthz`)
          return undefined
        } catch (error) {
          return (error as NodeJS.ErrnoException).code === 'ECONNREFUSED' ? true : undefined
        }
      })
      gateway.probes = `http://127.0.0.1:${port}`
    })
  })

  const noWorkers = process.platform !== 'linux' ? 'SO_REUSEPORT spreads connections over processes only on Linux' : target.missing
  describe(`probes listener with --workers on ${target.name}`, { skip: noWorkers, timeout: 60_000 }, () => {
    it('is bound once, by worker 0, and answers', async () => {
      const upstream = await startUpstream((_req, res) => res.end('ok'))
      const gateway = await startGateway(target, policy(upstream), { PILLION_E2E_ADMIN_TOKEN: TOKEN, PILLION_WORKERS: '2' })
      try {
        assert.equal(gateway.stdout.filter((line) => / probes on /.test(line)).length, 1, gateway.stdout.join('\n'))
        assert.equal((await request(`${gateway.probes}/readyz`)).status, 200)
        assert.equal((await request(`${gateway.probes}/config`)).status, 404)
      } finally {
        assert.equal(await gateway.stop(), 0, `gateway exit code; stderr:\n${gateway.stderr.join('\n')}`)
        await upstream.close()
      }
    })
  })
}
