// The defaults a dead endpoint meets: passive outlier detection ejects it, and a bodiless idempotent
// request whose connect failed is tried once more on another endpoint. Both can be turned off.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { closedPort, request, startGateway, startUpstream, targets, type Gateway, type Upstream } from './harness.ts'

interface EndpointView {
  url: string
  ejected: boolean
}

async function endpointsOf(gateway: Gateway, upstream: string): Promise<EndpointView[]> {
  const reply = await request(`${gateway.admin}/upstreams`)
  return reply.json().upstreams.find((u: { name: string }) => u.name === upstream).endpoints
}

for (const t of targets()) {
  describe(`safe defaults for a dead endpoint [${t.name}]`, { skip: t.missing }, () => {
    let live: Upstream
    let gateway: Gateway
    const dead: Record<string, string> = {}

    before(async () => {
      live = await startUpstream((req, res) => {
        req.resume()
        req.on('end', () => res.end('live'))
      })
      for (const name of ['gets', 'posts', 'bare']) dead[name] = `http://127.0.0.1:${await closedPort()}`
      const upstream = (name: string, extra = '') => `
[upstreams.${name}]
endpoints = ["${live.url}", "${dead[name]}"]
${extra}
[[routes]]
name = "${name}"
listener = "in"
path = "/${name}/*"
upstream = "${name}"
`
      gateway = await startGateway(
        t,
        `
[gateway]
service = "defaults"
admin = "127.0.0.1:0"
[listeners.in]
listen = "127.0.0.1:0"
direction = "ingress"
${upstream('gets')}
${upstream('posts')}
${upstream('bare', 'outlier = false\nretry_connect_failure = false')}
`,
      )
    })

    after(async () => {
      await gateway?.stop()
      await live?.close()
    })

    it('a GET whose connect failed is answered from another endpoint, and the dead one is ejected', async () => {
      const statuses = []
      for (let i = 0; i < 12; i++) statuses.push((await request(`${gateway.listeners.in}/gets/x`)).status)
      assert.deepEqual(statuses, Array(12).fill(200))
      const shown = await endpointsOf(gateway, 'gets')
      assert.deepEqual(shown.map((e) => [e.url, e.ejected]), [[live.url, false], [dead.gets, true]])
      // The access log is written in batches: wait for the line, which counts the second try.
      await gateway.waitForLine(/"route":"gets".*"retries":1/)
    })

    it('a POST is not retried: it fails until five failures in a row eject the dead endpoint', async () => {
      const statuses = []
      for (let i = 0; i < 20; i++) statuses.push((await request(`${gateway.listeners.in}/posts/x`, { method: 'POST', body: 'order' })).status)
      assert.equal(statuses.filter((status) => status === 502).length, 5, statuses.join(' '))
      assert.deepEqual(statuses.slice(-10), Array(10).fill(200))
      assert.equal((await endpointsOf(gateway, 'posts')).find((e) => e.url === dead.posts)?.ejected, true)
    })

    it('with outlier = false and retry_connect_failure = false every other request fails, as before', async () => {
      const statuses = []
      for (let i = 0; i < 12; i++) statuses.push((await request(`${gateway.listeners.in}/bare/x`)).status)
      assert.equal(statuses.filter((status) => status === 502).length, 6, statuses.join(' '))
      assert.ok((await endpointsOf(gateway, 'bare')).every((e) => !e.ejected))
    })
  })
}
