// The Redis store against the real Redis on 127.0.0.1:6379 (CI makes sure it answers), never a mock.
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { Redis } from 'ioredis'
import { closedPort } from '../../../e2e/harness.ts'
import { createRedisStore } from '../../../../src/runtime/redis.ts'
import type { RateLimitAlgorithm, RedisSettings } from '../../../../src/policies/rate-limit/config.ts'

const URL = 'redis://127.0.0.1:6379'
const PREFIX = `pillion-test:${randomUUID()}:`
const settings: RedisSettings = { url: URL, onError: 'deny', timeoutMs: 2000 }
const bucket = (ratePerSecond: number, burst: number): RateLimitAlgorithm => ({ kind: 'token_bucket', ratePerSecond, burst })

/** A window whose next boundary is at least ten minutes off, so a test cannot straddle two windows. */
function windowAwayFromItsEnd(): number {
  const candidates = [86_400_000, 7 * 3_600_000, 5 * 3_600_000]
  return candidates.find((ms) => ms - (Date.now() % ms) > 600_000)!
}

describe('Redis rate-limit store (ioredis, real Redis)', () => {
  let admin: Redis
  let errors: unknown[]
  let store: ReturnType<typeof createRedisStore>

  before(async () => {
    admin = new Redis(URL, { lazyConnect: true })
    await admin.connect()
    errors = []
    store = createRedisStore(settings, (error) => errors.push(error))
  })

  after(async () => {
    await store.close()
    const keys = await admin.keys(`${PREFIX}*`)
    if (keys.length > 0) await admin.del(...keys)
    admin.disconnect()
  })

  test('a token bucket admits its burst, then refuses with a retry time', async () => {
    const key = `${PREFIX}bucket`
    const decisions = []
    for (let i = 0; i < 7; i++) decisions.push(await store.take(key, bucket(1 / 3600, 5)))
    assert.deepEqual(
      decisions.map((d) => d.allowed),
      [true, true, true, true, true, false, false],
    )
    assert.equal(decisions[0]!.remaining, 4)
    assert.ok(decisions[6]!.retryMs > 3_000_000 && decisions[6]!.retryMs <= 3_600_000, String(decisions[6]!.retryMs))
    // The hash expires once the bucket would be full again: never a key left behind for good.
    const ttl = await admin.pttl(key)
    assert.ok(ttl > 0 && ttl <= 5 * 3_600_000 + 1000, String(ttl))
  })

  test('atomic: 200 concurrent takes on a bucket of 10 admit exactly 10', async () => {
    const key = `${PREFIX}concurrent`
    const decisions = await Promise.all(Array.from({ length: 200 }, () => store.take(key, bucket(1 / 3600, 10))))
    assert.equal(decisions.filter((d) => d.allowed).length, 10)
  })

  test('a fixed window counts admitted requests only, and says when it ends', async () => {
    const key = `${PREFIX}window`
    const windowMs = windowAwayFromItsEnd()
    const algorithm: RateLimitAlgorithm = { kind: 'fixed_window', limit: 3, windowMs }
    const decisions = []
    for (let i = 0; i < 5; i++) decisions.push(await store.take(key, algorithm))
    assert.deepEqual(
      decisions.map((d) => [d.allowed, d.remaining]),
      [[true, 2], [true, 1], [true, 0], [false, 0], [false, 0]],
    )
    const expectedEnd = windowMs - (Date.now() % windowMs)
    assert.ok(Math.abs(decisions[4]!.retryMs - expectedEnd) < 60_000, `${decisions[4]!.retryMs} vs ${expectedEnd}`)
    assert.equal(await admin.hget(key, 'n'), '3')
  })

  test('a Redis that lost its scripts (restart, SCRIPT FLUSH) is sent them again', async () => {
    await admin.script('FLUSH')
    const decision = await store.take(`${PREFIX}flushed`, bucket(1, 1))
    assert.equal(decision.allowed, true)
    assert.deepEqual(errors, [])
  })

  test('nothing listening: calls fail, they do not wait for a connection', async () => {
    const port = await closedPort()
    const seen: unknown[] = []
    const down = createRedisStore({ ...settings, url: `redis://127.0.0.1:${port}` }, (error) => seen.push(error))
    try {
      await assert.rejects(down.take(`${PREFIX}down`, bucket(1, 1)))
      await assert.rejects(down.take(`${PREFIX}down`, bucket(1, 1)))
      assert.ok(seen.length > 0, 'the connection failure was reported')
      assert.match(String(seen[0]), /ECONNREFUSED/)
    } finally {
      await down.close()
    }
  })

  test('after close, calls fail', async () => {
    const closing = createRedisStore(settings, () => {})
    assert.equal((await closing.take(`${PREFIX}closing`, bucket(1, 1))).allowed, true)
    await closing.close()
    await assert.rejects(closing.take(`${PREFIX}closing`, bucket(1, 1)))
  })
})
