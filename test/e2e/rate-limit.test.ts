import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { request, startGateway, startUpstream, targets, type Gateway, type Reply, type Upstream } from './harness.ts'

function policy(upstream: Upstream): string {
  const route = (name: string, limits: string) => `
[[routes]]
name = "${name}"
listener = "ingress"
path = "/${name}"
upstream = "app"
${limits}`
  return `
[gateway]
service = "rate-limit-e2e"
admin = "127.0.0.1:0"

[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"

[upstreams.app]
endpoints = ["${upstream.url}"]
${route('exact', '[[routes.rate_limit]]\nname = "tight"\nrate = "10/h"\nburst = 10\nkey = "route"')}
${route('second', '[[routes.rate_limit]]\nname = "per-second"\nrate = "10/s"\nburst = 10\nkey = "route"')}
${route('trial', '[[routes.rate_limit]]\nname = "new-limit"\nrate = "1/h"\nburst = 2\nkey = "route"\nmode = "dry_run"')}
${route('keyed', '[[routes.rate_limit]]\nname = "per-key"\nrate = "1/h"\nburst = 2\nkey = "header:x-api-key"')}
`
}

/** Sends n requests at once, each on its own connection. */
const burst = (url: string, n: number): Promise<Reply[]> => Promise.all(Array.from({ length: n }, () => request(url)))

for (const target of targets()) {
  describe(`rate limits on ${target.name}`, { skip: target.missing }, () => {
    let upstream: Upstream
    let gateway: Gateway
    let base: string

    before(async () => {
      upstream = await startUpstream((_req, res) => res.end('ok'))
      gateway = await startGateway(target, policy(upstream))
      base = gateway.listeners.ingress!
    })

    after(async () => {
      await gateway?.stop()
      await upstream?.close()
    })

    it('admits exactly the burst of 200 concurrent requests, and refuses the rest with 429 and headers', async () => {
      // 10/h: not one token comes back during the test, however slowly the 200 arrive.
      const replies = await burst(`${base}/exact`, 200)
      const admitted = replies.filter((reply) => reply.status === 200)
      const refused = replies.filter((reply) => reply.status === 429)
      assert.equal(admitted.length, 10)
      assert.equal(refused.length, 190)
      // Each admitted request saw its own count: r from 9 down to 0, once each.
      const left = admitted.map((reply) => Number(/^"tight";r=(\d+);t=\d+$/.exec(String(reply.headers.ratelimit))![1]))
      assert.deepEqual(left.sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
      for (const reply of [...admitted, ...refused]) assert.equal(reply.headers['ratelimit-policy'], '"tight";q=10;w=3600;pillion-burst=10')
      for (const reply of refused) {
        assert.equal(reply.headers['retry-after'], '360')
        assert.equal(reply.headers.ratelimit, '"tight";r=0;t=360')
        assert.equal(reply.headers['x-pillion-error'], 'rate_limited')
        assert.equal(reply.json().code, 'rate_limited')
      }
    })

    it('at 10/s with a burst of 10, admits 10 of 200 plus at most what refilled meanwhile', async () => {
      const startedAt = performance.now()
      const replies = await burst(`${base}/second`, 200)
      const elapsedMs = performance.now() - startedAt
      const admitted = replies.filter((reply) => reply.status === 200).length
      assert.equal(admitted + replies.filter((reply) => reply.status === 429).length, 200)
      // One token per 100 ms since the first request: a bound that holds however slow the machine is.
      assert.ok(admitted >= 10 && admitted <= 10 + Math.floor(elapsedMs / 100), `${admitted} admitted in ${elapsedMs.toFixed(0)} ms`)
      const refused = replies.find((reply) => reply.status === 429)!
      assert.equal(refused.headers['retry-after'], '1')
      assert.equal(refused.headers.ratelimit, '"per-second";r=0;t=1')
    })

    it('dry run lets every request through and logs what it would have refused', async () => {
      const replies = []
      for (let i = 0; i < 5; i++) replies.push(await request(`${base}/trial`))
      assert.deepEqual(
        replies.map((reply) => reply.status),
        [200, 200, 200, 200, 200],
      )
      for (const reply of replies) assert.equal(reply.headers.ratelimit, undefined)
      const line = JSON.parse(await gateway.waitForLine(/would have rejected/, 'stderr'))
      assert.equal(line.msg, 'rate limit would have rejected (dry run)')
      assert.equal(line.route, 'trial')
      assert.equal(line.limit, 'new-limit')
      assert.ok(line.would_reject >= 1)
    })

    it('a header key gives each value its own bucket; requests without it share one', async () => {
      const send = (key?: string) => request(`${base}/keyed`, { headers: key === undefined ? {} : { 'x-api-key': key } })
      const statuses = async (key: string | undefined, n: number) => {
        const out = []
        for (let i = 0; i < n; i++) out.push((await send(key)).status)
        return out
      }
      assert.deepEqual(await statuses('alice', 3), [200, 200, 429])
      assert.deepEqual(await statuses('bob', 3), [200, 200, 429])
      assert.deepEqual(await statuses(undefined, 3), [200, 200, 429])
      assert.equal((await send('carol')).headers.ratelimit, '"per-key";r=1;t=3600')
    })
  })
}
