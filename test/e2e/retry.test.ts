import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { closedPort, deferred, readBody, request, startGateway, startUpstream, targets, type Gateway, type Upstream } from './harness.ts'

/** Per-path behaviour of the flaky upstream, and what it saw. */
const hits = new Map<string, number>()
const bodies = new Map<string, string[]>()
const hit = (key: string) => {
  const n = (hits.get(key) ?? 0) + 1
  hits.set(key, n)
  return n
}

function policy(flaky: Upstream, healthy: Upstream, refused: number): string {
  return `
[gateway]
service = "retry"
admin = "127.0.0.1:0"

[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"

[upstreams.flaky]
endpoints = ["${flaky.url}"]

[upstreams.pair]
endpoints = ["${flaky.url}", "${healthy.url}"]

[upstreams.half_refused]
endpoints = ["http://127.0.0.1:${refused}", "${healthy.url}"]

[defaults]
timeout = "5s"

[[routes]]
name = "pair"
listener = "ingress"
path = "/pair/*"
upstream = "pair"
[routes.retry]
attempts = 2
on = ["5xx"]

[[routes]]
name = "refused"
listener = "ingress"
path = "/refused/*"
upstream = "half_refused"
[routes.retry]
attempts = 2

[[routes]]
name = "deadline"
listener = "ingress"
path = "/deadline/*"
upstream = "flaky"
timeout = "300ms"
[routes.retry]
attempts = 3
per_try_timeout = "200ms"

[[routes]]
name = "storm"
listener = "ingress"
path = "/storm/*"
upstream = "flaky"
[routes.retry]
attempts = 3
on = ["5xx"]
backoff = { base = "1ms", max = "2ms" }
budget = { ratio = 0.2, min_per_second = 1, ttl = "10s" }

[[routes]]
name = "flaky"
listener = "ingress"
path = "/*"
upstream = "flaky"
[routes.retry]
attempts = 3
per_try_timeout = "250ms"
on = ["5xx", "429"]
idempotency_key = true
max_body = "1kb"
backoff = { base = "1ms", max = "5ms" }
`
}

for (const target of targets()) {
  describe(`retries on ${target.name}`, { skip: target.missing }, () => {
    let flaky: Upstream
    let healthy: Upstream
    let gateway: Gateway
    let base: string
    const hangingClosed = deferred()

    before(async () => {
      hits.clear()
      bodies.clear()
      flaky = await startUpstream(async (req, res) => {
        const url = new URL(req.url!, 'http://x')
        const key = url.searchParams.get('key') ?? url.pathname
        const n = hit(key)
        const body = (await readBody(req)).toString()
        bodies.set(key, [...(bodies.get(key) ?? []), body])
        const failFirst = Number(url.searchParams.get('fail') ?? '0')
        if (url.searchParams.get('hang') === 'first' && n === 1) {
          req.socket.once('close', () => hangingClosed.resolve())
          return
        }
        if (url.searchParams.has('retry_after')) {
          res.writeHead(503, { 'retry-after': url.searchParams.get('retry_after')! })
          return res.end()
        }
        if (url.pathname.startsWith('/deadline')) return // never answers
        if (n <= failFirst || url.searchParams.has('always')) {
          res.writeHead(Number(url.searchParams.get('status') ?? 503))
          return res.end('failed')
        }
        res.end(`ok after ${n}`)
      })
      healthy = await startUpstream((req, res) => res.end('healthy'))
      gateway = await startGateway(target, policy(flaky, healthy, await closedPort()))
      base = gateway.listeners.ingress!
    })

    after(async () => {
      await gateway?.stop()
      await flaky?.close()
      await healthy?.close()
    })

    it('retries a failed GET and says how many tries it took', async () => {
      const reply = await request(`${base}/a?key=a&fail=2`)
      assert.equal(reply.status, 200)
      assert.equal(reply.body.toString(), 'ok after 3')
      assert.equal(reply.headers['x-pillion-attempts'], '3')
    })

    it('gives up after the attempts and returns the upstream answer', async () => {
      const reply = await request(`${base}/b?key=b&always`)
      assert.equal(reply.status, 503)
      assert.equal(reply.body.toString(), 'failed')
      assert.equal(reply.headers['x-pillion-attempts'], '3')
      assert.equal(hits.get('b'), 3)
    })

    it('does not retry a status outside the conditions', async () => {
      const reply = await request(`${base}/c?key=c&always&status=404`)
      assert.equal(reply.status, 404)
      assert.equal(hits.get('c'), 1)
      const limited = await request(`${base}/c2?key=c2&fail=1&status=429`)
      assert.equal(limited.status, 200, 'explicit "429" is a condition')
    })

    it('retries POST only with an Idempotency-Key, and replays the body', async () => {
      const plain = await request(`${base}/p?key=p&fail=1`, { method: 'POST', body: 'payload' })
      assert.equal(plain.status, 503)
      assert.equal(plain.headers['x-pillion-attempts'], '1')
      const keyed = await request(`${base}/k?key=k&fail=1`, {
        method: 'POST',
        body: 'payload',
        headers: { 'idempotency-key': 'order-7' },
      })
      assert.equal(keyed.status, 200)
      assert.deepEqual(bodies.get('k'), ['payload', 'payload'])
    })

    it('streams a body larger than max_body once and does not retry it', async () => {
      const big = 'x'.repeat(4096)
      const reply = await request(`${base}/big?key=big&fail=1`, { method: 'PUT', body: big })
      assert.equal(reply.status, 503)
      assert.equal(reply.headers['x-pillion-attempts'], '1')
      assert.equal(bodies.get('big')![0]!.length, 4096)
    })

    it('cuts a hanging try at per_try_timeout, closes it, and retries', async () => {
      const reply = await request(`${base}/h?key=h&hang=first`)
      assert.equal(reply.status, 200)
      assert.equal(reply.headers['x-pillion-attempts'], '2')
      await hangingClosed.promise
    })

    it('goes to another endpoint after a connect failure', async () => {
      for (let i = 0; i < 6; i++) {
        const reply = await request(`${base}/refused/x`)
        assert.equal(reply.status, 200)
        assert.equal(reply.body.toString(), 'healthy')
      }
    })

    it('retries on a different endpoint', async () => {
      for (let i = 0; i < 6; i++) {
        const reply = await request(`${base}/pair/x?always`)
        assert.equal(reply.status, 200, 'the second try went to the healthy endpoint')
      }
    })

    it('starts no try that cannot finish before the route deadline', async () => {
      const reply = await request(`${base}/deadline/x?key=dl`)
      assert.equal(reply.status, 504)
      assert.equal(reply.json().code, 'upstream_timeout')
      assert.equal(reply.headers['x-pillion-attempts'], '1')
    })

    it('honours Retry-After only within the deadline and up to 300 s', async () => {
      const tooLong = await request(`${base}/ra?key=ra&retry_after=60`)
      assert.equal(tooLong.headers['x-pillion-attempts'], '1', '60 s is beyond the 5 s route timeout')
      const ignored = await request(`${base}/rb?key=rb&retry_after=400`)
      assert.equal(ignored.headers['x-pillion-attempts'], '3', 'over 300 s is ignored: normal backoff')
    })

    it('bounds a retry storm by the budget', async () => {
      const offered = 100
      for (let i = 0; i < offered; i += 10) {
        await Promise.all(Array.from({ length: 10 }, () => request(`${base}/storm/x?key=storm&always`)))
      }
      const load = hits.get('storm')!
      assert.ok(load > offered, `some retries happened (${load})`)
      assert.ok(load <= offered * 1.2 + 10, `upstream load ${load} stays within (1 + 0.2) × ${offered} + 10`)
    })
  })
}
