// Global rate limits on a real Redis: three gateway processes share one quota on 127.0.0.1:6379, and a
// Redis of our own (stopped, frozen, restarted on the same port) shows on_error and recovery.
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import { OwnRedis } from './own-redis.ts'
import { closedPort, request, startGateway, startUpstream, type Gateway, type Upstream } from './harness.ts'
import { counted, everyoneAtOnce, heavyTargets, quotaPolicy, redisErrors, steadyLoad } from './quota-helpers.ts'

const SHARED_REDIS = 'redis://127.0.0.1:6379'

/** The [redis] table's body for one Redis at `url`. */
const single = (url: string, onError: string, timeout: string) => `url = "${url}"\non_error = "${onError}"\ntimeout = "${timeout}"`

async function deleteKeys(service: string): Promise<void> {
  const redis = new Redis(SHARED_REDIS, { lazyConnect: true })
  await redis.connect()
  try {
    const keys = await redis.keys(`pillion:{${service}:*`)
    if (keys.length > 0) await redis.del(...keys)
  } finally {
    redis.disconnect()
  }
}

for (const target of heavyTargets()) {
  describe(`one quota shared by three gateways on ${target.name}`, { skip: target.missing }, () => {
    const service = `quota-e2e-${target.name}-${randomUUID().slice(0, 8)}`
    let upstream: Upstream
    let gateways: Gateway[] = []

    before(async () => {
      upstream = await startUpstream((_req, res) => res.end('ok'))
      // Fail closed with a long timeout: a slow machine can only admit fewer, never more.
      const text = quotaPolicy(service, upstream, single(SHARED_REDIS, 'deny', '2s'))
      gateways = await Promise.all([0, 1, 2].map(() => startGateway(target, text)))
    })

    after(async () => {
      await Promise.all(gateways.map((gateway) => gateway.stop()))
      await upstream?.close()
      await deleteKeys(service)
    })

    it('150 concurrent requests through 3 gateways admit the bucket of 40 at most, once in total', async () => {
      const replies = await everyoneAtOnce(gateways, '/shared', 50)
      const admitted = replies.filter((reply) => reply.status === 200).length
      assert.equal(admitted + replies.filter((reply) => reply.status === 429).length, 150)
      assert.ok(admitted <= 40, `${admitted} admitted`)
      if (gateways.every((gateway) => redisErrors(gateway).length === 0)) assert.equal(admitted, 40)
      const refused = replies.find((reply) => reply.status === 429)!
      assert.equal(refused.headers.ratelimit, '"bucket";r=0;t=3600')
      assert.equal(refused.json().code, 'rate_limited')
    })

    it('a fixed-window quota is shared the same way, per tenant', async () => {
      const acme = await everyoneAtOnce(gateways, '/quota', 15, { 'x-tenant': 'acme' })
      const admitted = acme.filter((reply) => reply.status === 200).length
      assert.ok(admitted <= 25, `${admitted} admitted`)
      if (gateways.every((gateway) => redisErrors(gateway).length === 0)) assert.equal(admitted, 25)
      const other = await request(`${gateways[1]!.listeners.ingress}/quota`, { headers: { 'x-tenant': 'globex' } })
      assert.equal(other.status, 200)
      assert.match(String(other.headers.ratelimit), /^"per-tenant";r=24;t=\d+$/)
    })

    it('another service on the same Redis has its own counts', async () => {
      const neighbour = await startGateway(target, quotaPolicy(`${service}-neighbour`, upstream, single(SHARED_REDIS, 'deny', '2s')))
      try {
        const reply = await request(`${neighbour.listeners.ingress}/shared`)
        assert.equal(reply.status, 200)
        assert.equal(reply.headers.ratelimit, '"bucket";r=39;t=3600')
      } finally {
        await neighbour.stop()
        await deleteKeys(`${service}-neighbour`)
      }
    })
  })
}

/** A redis-server of the test's own, with nothing saved to disk, that can be stopped and restarted. */
for (const target of heavyTargets()) {
  describe(`Redis down, slow and back on ${target.name}`, { skip: target.missing }, () => {
    let redis: OwnRedis
    let upstream: Upstream
    let open: Gateway
    let closed: Gateway

    before(async () => {
      redis = new OwnRedis(await closedPort())
      await redis.start()
      upstream = await startUpstream((_req, res) => res.end('ok'))
      const url = `redis://127.0.0.1:${redis.port}`
      const service = `redis-down-${randomUUID().slice(0, 8)}`
      ;[open, closed] = await Promise.all([
        startGateway(target, quotaPolicy(service, upstream, single(url, 'allow', '200ms'))),
        startGateway(target, quotaPolicy(service, upstream, single(url, 'deny', '200ms'))),
      ])
    })

    after(async () => {
      await open?.stop()
      await closed?.stop()
      await upstream?.close()
      await redis?.stop()
    })

    it('a frozen Redis: every request still gets its answer, by on_error', async () => {
      assert.ok(counted(await request(`${open.listeners.ingress}/roomy`)))
      assert.ok(counted(await request(`${closed.listeners.ingress}/roomy`)))
      redis.freeze()
      try {
        const [allowed, denied] = await Promise.all([everyoneAtOnce([open], '/roomy', 5), everyoneAtOnce([closed], '/roomy', 5)])
        for (const reply of allowed) {
          assert.equal(reply.status, 200)
          assert.equal(reply.headers.ratelimit, undefined, 'not counted')
        }
        for (const reply of denied) {
          assert.equal(reply.status, 429)
          assert.equal(reply.headers['retry-after'], '1')
          assert.match(reply.json().message, /store is unavailable/)
        }
        for (const gateway of [open, closed]) {
          const line = JSON.parse(await gateway.waitForLine(/redis failed/, 'stderr'))
          assert.match(line.error, /within 200ms|timed out/i)
        }
      } finally {
        redis.thaw()
      }
    })

    it('Redis stopped under load and restarted on the same port: on_error meanwhile, then counting again by itself', async () => {
      const allowLoad = steadyLoad(open, 3)
      const denyLoad = steadyLoad(closed, 3)
      try {
        await Promise.all([allowLoad.until(counted), denyLoad.until(counted)])
        await redis.stop()
        await Promise.all([allowLoad.until((reply) => reply.status === 200 && !counted(reply)), denyLoad.until((reply) => reply.status === 429)])
        await redis.start()
        await Promise.all([allowLoad.until(counted), denyLoad.until(counted)])
      } finally {
        await Promise.all([allowLoad.stop(), denyLoad.stop()])
      }
      assert.deepEqual(allowLoad.failures, [])
      assert.deepEqual(denyLoad.failures, [])
      assert.deepEqual([...new Set(allowLoad.replies.map(({ reply }) => reply.status))], [200])
      assert.deepEqual([...new Set(denyLoad.replies.map(({ reply }) => reply.status))].sort(), [200, 429])
      for (const gateway of [open, closed]) {
        await gateway.waitForLine(/redis answers again/, 'stderr')
        // Throttled: far fewer lines than failed calls.
        assert.ok(redisErrors(gateway).length <= 3, redisErrors(gateway).join('\n'))
      }
    })
  })
}
