import type { Redis as RedisClient, RedisOptions } from 'ioredis'
import type { RateLimitStore, StoreDecision } from '../policies/rate-limit/global-store.ts'
import type { RateLimitAlgorithm, RedisSettings } from '../policies/rate-limit/config.ts'

/**
 * The rate-limit store on Redis, with ioredis: the one client verified on Node, Bun and Deno alike
 * (runtime.md §5.1), with Cluster and Sentinel when we need them.
 *
 * Both algorithms are one Lua script each, run with EVALSHA (ioredis defineCommand, which falls back
 * to EVAL when a restarted Redis has lost its script cache). A script runs atomically, and reads the
 * time from Redis (TIME), so replicas whose clocks differ still share one count.
 */

/**
 * Token bucket (runtime.md §5.2). The hash holds tokens and the time they were counted; it expires
 * once it would be full again, since a full bucket and no bucket are the same thing.
 * Returns {allowed, remaining, retry ms, ms until full}.
 */
const TOKEN_BUCKET = `
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(v[1]) or burst
local ts = tonumber(v[2]) or now
if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate / 1000) else now = ts end
local allowed, retry = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry = math.ceil((1 - tokens) * 1000 / rate - 1e-6)
end
local full = math.ceil((burst - tokens) * 1000 / rate - 1e-6)
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], full + 1000)
return {allowed, math.floor(tokens), retry, full}
`

/**
 * Fixed window lined up with the clock (window n covers [n × size, (n + 1) × size) in Unix ms, so a
 * day starts at 00:00 UTC). The hash holds the window's number and its count, so one key serves
 * every window and Cluster never sees an undeclared key. A refused request is not counted.
 * Returns {allowed, remaining, retry ms, ms until the window ends}.
 */
const FIXED_WINDOW = `
local limit, size = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = math.floor(now / size)
local v = redis.call('HMGET', KEYS[1], 'w', 'n')
local count = 0
if tonumber(v[1]) == window then count = tonumber(v[2]) or 0 end
local left = (window + 1) * size - now
if count >= limit then return {0, 0, left, left} end
count = count + 1
redis.call('HSET', KEYS[1], 'w', window, 'n', count)
redis.call('PEXPIRE', KEYS[1], left + 1000)
return {1, limit - count, 0, left}
`

type Reply = [allowed: number, remaining: number, retryMs: number, resetMs: number]

interface ScriptedClient extends RedisClient {
  pillionTokenBucket(key: string, ratePerSecond: number, burst: number): Promise<Reply>
  pillionFixedWindow(key: string, limit: number, windowMs: number): Promise<Reply>
}

/** Reconnect backoff: 50 ms more per attempt, at most 1 s apart, so a Redis that comes back is used within a second. */
const reconnectDelay = (attempt: number): number => Math.min(attempt * 50, 1000)

/**
 * Opens the store. ioredis is loaded here, on first use (it costs ~100 ms at start-up otherwise), and
 * connects at once. Commands never queue while disconnected (enableOfflineQueue false) and are never
 * re-sent (maxRetriesPerRequest 0): a call fails fast and the caller follows on_error. Until the
 * first connection attempt has settled, calls wait for it (the caller's own timer bounds the wait).
 */
export function createRedisStore(settings: RedisSettings, onError: (error: unknown) => void): RateLimitStore {
  let closed = false
  let client: ScriptedClient | undefined
  const options: RedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: settings.timeoutMs,
    connectTimeout: Math.max(settings.timeoutMs, 1000),
    retryStrategy: reconnectDelay,
    lazyConnect: false,
  }
  const opened = import('ioredis').then(({ Redis }) => {
    if (closed) throw new Error('the Redis store is closed')
    const redis = new Redis(settings.url, options) as ScriptedClient
    // Without a listener ioredis prints every reconnect failure itself.
    redis.on('error', onError)
    redis.defineCommand('pillionTokenBucket', { numberOfKeys: 1, lua: TOKEN_BUCKET })
    redis.defineCommand('pillionFixedWindow', { numberOfKeys: 1, lua: FIXED_WINDOW })
    client = redis
    return redis
  })
  /** Settles when the first connection attempt has: connected, or failed. */
  const firstAttempt = opened.then(
    (redis) =>
      new Promise<void>((resolve) => {
        if (redis.status === 'ready') return resolve()
        const done = () => {
          redis.off('ready', done)
          redis.off('error', done)
          redis.off('end', done)
          resolve()
        }
        redis.on('ready', done)
        redis.on('error', done)
        redis.on('end', done)
      }),
    () => {},
  )
  let firstAttemptSettled = false
  void firstAttempt.then(() => (firstAttemptSettled = true))
  opened.catch(onError)

  return {
    async take(key: string, algorithm: RateLimitAlgorithm): Promise<StoreDecision> {
      let redis = client
      if (redis === undefined || (!firstAttemptSettled && redis.status !== 'ready')) {
        await firstAttempt
        redis = await opened
      }
      const reply =
        algorithm.kind === 'token_bucket'
          ? await redis.pillionTokenBucket(key, algorithm.ratePerSecond, algorithm.burst)
          : await redis.pillionFixedWindow(key, algorithm.limit, algorithm.windowMs)
      return { allowed: reply[0] === 1, remaining: reply[1], retryMs: reply[2], resetMs: reply[3] }
    },
    async close(): Promise<void> {
      closed = true
      const redis = client ?? (await opened.catch(() => undefined))
      redis?.disconnect()
    },
  }
}
