// The quota store under stress: a Redis frozen with SIGSTOP under load, then killed and restarted on
// the same port under load. No request waits past the Redis timeout; counting resumes by itself.
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { Agent, request as httpRequest } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { closedPort, startGateway, startUpstream, targets, type Gateway, type Upstream } from '../e2e/harness.ts'
import { OwnRedis } from '../e2e/own-redis.ts'
import { chaosPolicy, drive, percentile, recordFigures, round, type Outcome } from './chaos-kit.ts'

interface Counted {
  status: number
  /** The answer carries RateLimit headers: Redis was asked and answered. */
  counted: boolean
  ms: number
}

function quotaCall(base: string, tenant: string, agent: Agent): Promise<Counted> {
  const started = performance.now()
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}/q`, { headers: { 'x-tenant': tenant }, agent }, (res) => {
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode!, counted: res.headers.ratelimit !== undefined, ms: performance.now() - started }))
    })
    req.on('error', reject)
    req.end()
  })
}

for (const t of targets().filter((target) => (process.env.PILLION_CHAOS_TARGETS ?? 'node,bun,binary').split(',').includes(target.name))) {
  describe(`chaos: the quota store frozen and restarted [${t.name}]`, { skip: t.missing }, () => {
    let redis: OwnRedis
    let upstream: Upstream
    let gateway: Gateway
    const agent = new Agent({ keepAlive: true, maxSockets: 16 })

    before(async () => {
      redis = new OwnRedis(await closedPort())
      await redis.start()
      upstream = await startUpstream((_req, res) => res.end('ok'))
      gateway = await startGateway(
        t,
        chaosPolicy(`chaos-redis-${randomUUID().slice(0, 8)}`, upstream.url, {
          rest: `[redis]\nurl = "redis://127.0.0.1:${redis.port}"\non_error = "allow"\ntimeout = "50ms"`,
          route: 'rate_limit = [ { quota = { limit = 25, per = "1d" }, key = "header:x-tenant", store = "redis" } ]',
        }),
      )
    })

    /** Requests, one at a time, until one is counted: the gateway's Redis client is connected. */
    async function untilCounted(): Promise<void> {
      for (let tries = 0; !(await quotaCall(gateway.listeners.in!, randomUUID(), agent)).counted; tries++) assert.ok(tries < 10_000, 'counting never started')
    }

    after(async () => {
      agent.destroy()
      await gateway?.stop()
      await upstream?.close()
      await redis?.stop()
    })

    it('frozen under load: every request answered (on_error allow), none waiting past the timeout much; then exact again', async () => {
      await untilCounted()
      redis.freeze()
      let frozen: Outcome[]
      try {
        frozen = await drive(200, 16, () => quotaCall(gateway.listeners.in!, randomUUID(), agent).then((r) => ({ status: r.status, complete: !r.counted, bytes: 0, ms: r.ms })))
      } finally {
        redis.thaw()
      }
      assert.deepEqual([...new Set(frozen.map((o) => o.status))], [200])
      const thawedAt = performance.now()
      await untilCounted()
      const resumedMs = performance.now() - thawedAt
      const tenant = randomUUID()
      const exact = await drive(40, 16, () => quotaCall(gateway.listeners.in!, tenant, agent).then((r) => ({ status: r.status, complete: true, bytes: 0, ms: r.ms })))
      assert.equal(exact.filter((o) => o.status === 200).length, 25)
      recordFigures(t.name, 'Redis frozen (SIGSTOP) under load, timeout 50ms', {
        requests_while_frozen: 200,
        answered: frozen.length,
        p50_ms: round(percentile(frozen.map((o) => o.ms), 50)),
        p99_ms: round(percentile(frozen.map((o) => o.ms), 99)),
        max_ms: round(Math.max(...frozen.map((o) => o.ms))),
        counting_again_after_thaw_ms: round(resumedMs),
        quota_25_of_40_admitted: exact.filter((o) => o.status === 200).length,
      })
    })

    it('killed and restarted on the same port under load: answered meanwhile, counting again without a restart', async () => {
      let running = true
      const seen: Counted[] = []
      const load = Promise.all(
        Array.from({ length: 8 }, async () => {
          while (running) seen.push(await quotaCall(gateway.listeners.in!, randomUUID(), agent))
        }),
      )
      const waitFor = async (test: (reply: Counted) => boolean) => {
        const from = seen.length
        while (!seen.slice(from).some(test)) await new Promise((resolve) => setImmediate(resolve))
      }
      try {
        await waitFor((r) => r.counted)
        await redis.stop()
        const stoppedAt = performance.now()
        await waitFor((r) => !r.counted)
        await redis.start()
        const startedAt = performance.now()
        await waitFor((r) => r.counted)
        const countingAgainMs = performance.now() - startedAt
        running = false
        await load
        assert.deepEqual([...new Set(seen.map((r) => r.status))], [200])
        recordFigures(t.name, 'Redis killed and restarted under load', {
          requests: seen.length,
          down_ms: round(startedAt - stoppedAt),
          counting_again_after_restart_ms: round(countingAgainMs),
          max_ms: round(Math.max(...seen.map((r) => r.ms))),
        })
      } finally {
        running = false
        await load
      }
    })
  })
}
