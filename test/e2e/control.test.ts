import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { request, startGateway, startUpstream, targets, tempDir, type Upstream, until } from './harness.ts'

const policy = (upstream: Upstream, extra = '') => `
[gateway]
service = "central"
admin = "127.0.0.1:0"

[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"

[upstreams.app]
endpoints = ["${upstream.url}"]

[[routes]]
listener = "ingress"
path = "/*"
upstream = "app"
${extra}`

/** A central policy server: serves one text with an ETag, answers 304 to a matching If-None-Match. */
async function policyServer() {
  let text = ''
  let etag = '"0"'
  const conditional: string[] = []
  const upstream = await startUpstream((req, res) => {
    const ifNoneMatch = req.headers['if-none-match']
    if (ifNoneMatch !== undefined) conditional.push(ifNoneMatch)
    if (ifNoneMatch === etag) {
      res.writeHead(304, { etag })
      return res.end()
    }
    res.writeHead(200, { etag, 'content-type': 'application/toml' })
    res.end(text)
  })
  return {
    upstream,
    conditional,
    serve(next: string) {
      text = next
      etag = `"${Number(etag.slice(1, -1)) + 1}"`
    },
  }
}


for (const target of targets()) {
  describe(`central control on ${target.name}`, { skip: target.missing }, () => {
    it('polls the source with ETags, applies a valid change, keeps the last good one, and starts from its cache', { timeout: 60_000 }, async () => {
      const local = await startUpstream((_req, res) => res.end('local'))
      const first = await startUpstream((_req, res) => res.end('first'))
      const second = await startUpstream((_req, res) => res.end('second'))
      const central = await policyServer()
      const cache = join(tempDir(), 'last-good.toml')
      const bootstrap = policy(local, `\n[control]\nsource = "${central.upstream.url}/orders.toml"\npoll = "50ms"\ncache = "${cache}"\n`)
      central.serve(policy(first))
      let gateway = await startGateway(target, bootstrap)
      try {
        const ingress = () => gateway.listeners.ingress!
        assert.equal((await request(`${ingress()}/x`)).body.toString(), 'first', 'the central policy is in service from the start')
        central.serve(policy(second))
        await until('the change', async () => ((await request(`${ingress()}/x`)).body.toString() === 'second' ? true : undefined))
        await until('a conditional poll', async () => (central.conditional.length > 0 ? true : undefined))
        const status = (await request(`${gateway.admin}/config/status`)).json()
        assert.equal(status.source, `${central.upstream.url}/orders.toml`)
        assert.equal(status.lastReload.trigger, 'control')

        central.serve(policy(first).replace('direction = "ingress"', 'direction = "inward"'))
        const rejected = await until('the rejected policy', async () => {
          const s = (await request(`${gateway.admin}/config/status`)).json()
          return s.lastReload?.ok === false ? s : undefined
        })
        assert.equal(rejected.lastReload.problems[0].path, 'listeners.ingress.direction')
        assert.equal((await request(`${ingress()}/x`)).body.toString(), 'second', 'the last good policy stays')
        await until('the cache', async () => (existsSync(cache) && readFileSync(cache, 'utf8').includes(second.url) ? true : undefined))

        await gateway.stop()
        await central.upstream.close()
        gateway = await startGateway(target, bootstrap)
        assert.equal((await request(`${gateway.listeners.ingress}/x`)).body.toString(), 'second', 'started from the cached copy')
        await gateway.waitForLine(/policy source is unavailable at start/, 'stderr')
      } finally {
        await gateway.stop()
        await Promise.all([local.close(), first.close(), second.close(), central.upstream.close().catch(() => {})])
      }
    })
  })
}
