import assert from 'node:assert/strict'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { setTimeout as pause } from 'node:timers/promises'
import { request, startGateway, startUpstream, targets, type Gateway, type Upstream } from './harness.ts'

/**
 * The primary upstream answers by the first path segment, which is also the route: it fails with 500
 * for the segments in `failing`, and counts every request it sees, to prove an open breaker never
 * calls it. Bodies are written in chunks (no content-length), so the client has the whole body only
 * after the gateway has read the upstream body to its end.
 */
const failing = new Set<string>()
const hits = new Map<string, number>()

function primary(req: IncomingMessage, res: ServerResponse): void {
  const segment = new URL(req.url!, 'http://upstream').pathname.split('/')[1]!
  hits.set(segment, (hits.get(segment) ?? 0) + 1)
  if (failing.has(segment)) {
    res.writeHead(500, { 'content-type': 'application/json' })
    return void res.end('{"error":"primary down"}')
  }
  res.writeHead(200, { 'content-type': 'application/json' })
  res.write(`{"from":"primary",`)
  res.end(`"path":${JSON.stringify(req.url)}}`)
}

const hitsOf = (segment: string) => hits.get(segment) ?? 0

function policy(main: Upstream, replica: Upstream): string {
  return `
[gateway]
service = "shop"
admin = "127.0.0.1:0"
shutdown_grace = "2s"

[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"

[upstreams.primary]
endpoints = ["${main.url}"]

[upstreams.replica]
endpoints = ["${replica.url}"]

[[routes]]
name = "bare"
listener = "ingress"
path = "/bare/*"
upstream = "primary"
circuit_breaker = { window_requests = 10, min_requests = 2, open_for = "60s" }

[[routes]]
name = "static"
listener = "ingress"
path = "/static/*"
upstream = "primary"
circuit_breaker = { min_requests = 2, open_for = "60s" }
fallback = { status = 200, content_type = "application/json", body = '{"items":[],"degraded":true}' }

[[routes]]
name = "stale"
listener = "ingress"
path = "/stale/*"
upstream = "primary"
fallback = { stale = "5m" }

[[routes]]
name = "alt"
listener = "ingress"
path = "/alt/*"
upstream = "primary"
fallback = { upstream = "replica" }

[[routes]]
name = "probe"
listener = "ingress"
path = "/probe/*"
upstream = "primary"
circuit_breaker = { min_requests = 1, open_for = "200ms", half_open_requests = 1 }
`
}

interface Snapshot {
  route: string
  upstream: string
  state: string
  calls: number
  failures: number
  retryInMs: number
}

for (const target of targets()) {
  describe(`circuit breaker and fallback on ${target.name}`, { skip: target.missing }, () => {
    let main: Upstream
    let replica: Upstream
    let gateway: Gateway
    let ingress: string

    const breaker = async (key: string): Promise<Snapshot> => {
      const { breakers } = (await request(`${gateway.admin}/breakers`)).json() as { breakers: Snapshot[] }
      const found = breakers.find((snapshot) => `${snapshot.route}/${snapshot.upstream}` === key)
      assert.ok(found, `no breaker ${key} in ${JSON.stringify(breakers)}`)
      return found
    }

    /** Polls the admin API until the breaker reports `state`; bounded, and never asserts on how long it took. */
    const untilState = async (key: string, state: string): Promise<Snapshot> => {
      let last: Snapshot | undefined
      for (let poll = 0; poll < 500; poll++) {
        last = await breaker(key)
        if (last.state === state) return last
        await pause(10)
      }
      return assert.fail(`breaker ${key} never became ${state}; last ${JSON.stringify(last)}`)
    }

    before(async () => {
      failing.clear()
      hits.clear()
      main = await startUpstream(primary)
      replica = await startUpstream((req, res) => {
        res.setHeader('content-type', 'application/json')
        res.end(JSON.stringify({ from: 'replica', path: req.url }))
      })
      gateway = await startGateway(target, policy(main, replica))
      ingress = gateway.listeners.ingress!
    })

    after(async () => {
      const code = await gateway?.stop()
      await main?.close()
      await replica?.close()
      assert.equal(code, 0, `gateway exit code; stderr:\n${gateway?.stderr.join('\n')}`)
    })

    it('opens on failures, then answers 503 circuit_open with Retry-After without calling the upstream', async () => {
      failing.add('bare')
      for (let i = 0; i < 2; i++) assert.equal((await request(`${ingress}/bare/items`)).status, 500)
      assert.equal(hitsOf('bare'), 2)
      const rejected = await request(`${ingress}/bare/items`)
      assert.equal(rejected.status, 503)
      assert.equal(rejected.headers['x-pillion-error'], 'circuit_open')
      assert.equal(rejected.json().code, 'circuit_open')
      assert.equal(rejected.json().request_id, rejected.headers['x-request-id'])
      const retryAfter = Number(rejected.headers['retry-after'])
      assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `retry-after ${rejected.headers['retry-after']}`)
      assert.equal(hitsOf('bare'), 2, 'the open breaker did not call the upstream')
    })

    it('shows the open breaker at GET /breakers', async () => {
      const snapshot = await breaker('bare/primary')
      assert.equal(snapshot.state, 'open')
      assert.deepEqual([snapshot.calls, snapshot.failures], [2, 2])
      assert.ok(snapshot.retryInMs > 0 && snapshot.retryInMs <= 60_000)
      assert.equal((await breaker('static/primary')).state, 'closed')
    })

    it('serves the static fallback for a failing upstream and while the breaker is open', async () => {
      failing.add('static')
      for (let i = 0; i < 2; i++) {
        const replaced = await request(`${ingress}/static/items`)
        assert.equal(replaced.status, 200)
        assert.equal(replaced.headers['x-pillion-fallback'], 'static', 'an upstream 500 is replaced too')
      }
      assert.equal((await breaker('static/primary')).state, 'open')
      const before = hitsOf('static')
      const reply = await request(`${ingress}/static/items`)
      assert.equal(reply.status, 200)
      assert.equal(reply.headers['x-pillion-fallback'], 'static')
      assert.equal(reply.headers['content-type'], 'application/json')
      assert.match(String(reply.headers['x-request-id']), /\S/)
      assert.deepEqual(reply.json(), { items: [], degraded: true })
      assert.equal(hitsOf('static'), before, 'the open breaker did not call the upstream')
    })

    it('serves the last good answer when the upstream fails, for the same path and query only', async () => {
      const good = await request(`${ingress}/stale/items?page=1`)
      assert.equal(good.status, 200)
      assert.equal(good.headers['x-pillion-fallback'], undefined)
      failing.add('stale')
      const stale = await request(`${ingress}/stale/items?page=1`)
      assert.equal(stale.status, 200)
      assert.equal(stale.headers['x-pillion-fallback'], 'stale')
      assert.deepEqual(stale.json(), good.json())
      assert.equal(stale.headers['content-type'], 'application/json')
      assert.notEqual(stale.headers['x-request-id'], good.headers['x-request-id'])
      const uncached = await request(`${ingress}/stale/items?page=2`)
      assert.equal(uncached.status, 500, 'nothing stored for page 2: the failure passes through')
      assert.equal(uncached.headers['x-pillion-fallback'], undefined)
    })

    it('sends the request to the fallback upstream when the primary fails', async () => {
      failing.add('alt')
      const reply = await request(`${ingress}/alt/items?x=1`)
      assert.equal(reply.status, 200)
      assert.equal(reply.headers['x-pillion-fallback'], 'upstream')
      assert.deepEqual(reply.json(), { from: 'replica', path: '/alt/items?x=1' })
      assert.equal(hitsOf('alt'), 1, 'the primary was tried first')
    })

    it('lets a probe through after open_for, and closes when it succeeds', async () => {
      failing.add('probe')
      assert.equal((await request(`${ingress}/probe/x`)).status, 500)
      const rejected = await request(`${ingress}/probe/x`)
      // The open period is short: on a slow machine it may already be over, and the probe goes through.
      if (rejected.status === 503) assert.equal(rejected.headers['retry-after'], '1')
      failing.delete('probe')
      await untilState('probe/primary', 'half_open')
      const before = hitsOf('probe')
      const probe = await request(`${ingress}/probe/x`)
      assert.equal(probe.status, 200)
      assert.equal(hitsOf('probe'), before + 1)
      const closed = await breaker('probe/primary')
      assert.deepEqual([closed.state, closed.calls, closed.failures], ['closed', 0, 0])
    })
  })
}
