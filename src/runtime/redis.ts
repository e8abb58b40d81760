import type { Redis, RedisOptions } from 'ioredis'
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

/** What the store uses of a client, which a Redis and a Cluster both have. */
interface ScriptedClient extends Pick<Redis, 'defineCommand' | 'on' | 'off' | 'connect' | 'disconnect'> {
  readonly status: string
  pillionTokenBucket(key: string, ratePerSecond: number, burst: number): Promise<Reply>
  pillionFixedWindow(key: string, limit: number, windowMs: number): Promise<Reply>
}

type IoRedis = typeof import('ioredis')

/** Reconnect backoff: 50 ms more per attempt, at most 1 s apart, so a Redis that comes back is used within a second. */
const reconnectDelay = (attempt: number): number => Math.min(attempt * 50, 1000)

/**
 * Commands never queue while disconnected (enableOfflineQueue false) and are never re-sent
 * (maxRetriesPerRequest 0): a call fails fast and the caller follows on_error.
 */
function connectionOptions(settings: RedisSettings): RedisOptions {
  return {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: settings.timeoutMs,
    connectTimeout: Math.max(settings.timeoutMs, 1000),
    retryStrategy: reconnectDelay,
    lazyConnect: false,
  }
}

/**
 * One Redis; a Cluster from its seed nodes (ioredis learns the rest from CLUSTER SLOTS and follows
 * MOVED/ASK); or the master that Sentinel names, followed through a failover (failoverDetector hears
 * +switch-master at once instead of waiting for the old master's connection to time out).
 */
function openClient({ Redis, Cluster }: IoRedis, settings: RedisSettings): ScriptedClient {
  const options = connectionOptions(settings)
  if ('url' in settings) return new Redis(settings.url, options) as unknown as ScriptedClient
  if ('cluster' in settings) {
    const seeds = settings.cluster.map((text) => new URL(text))
    const credentials = seeds.find((url) => url.username !== '' || url.password !== '')
    const { enableOfflineQueue, retryStrategy, ...nodeOptions } = options
    return new Cluster(
      seeds.map((url) => ({ host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || 6379) })),
      {
        enableOfflineQueue,
        clusterRetryStrategy: retryStrategy,
        // A failed-over slot is retried once the replica has taken over; our own timer bounds the wait.
        retryDelayOnFailover: 50,
        retryDelayOnClusterDown: 50,
        redisOptions: {
          ...nodeOptions,
          ...(credentials === undefined ? {} : { username: decodeURIComponent(credentials.username) || undefined, password: decodeURIComponent(credentials.password) }),
          ...(seeds[0]!.protocol === 'rediss:' ? { tls: { servername: seeds[0]!.hostname } } : {}),
        },
      },
    ) as unknown as ScriptedClient
  }
  return new Redis({
    ...options,
    sentinels: settings.sentinels.map((address) => {
      const split = address.lastIndexOf(':')
      return { host: address.slice(0, split).replace(/^\[|\]$/g, ''), port: Number(address.slice(split + 1)) }
    }),
    name: settings.masterName,
    username: settings.username,
    password: settings.password,
    sentinelPassword: settings.sentinelPassword,
    sentinelRetryStrategy: reconnectDelay,
    sentinelCommandTimeout: Math.max(settings.timeoutMs, 1000),
    failoverDetector: true,
  }) as unknown as ScriptedClient
}

/**
 * Opens the store. ioredis is loaded here, on first use (it costs ~100 ms at start-up otherwise), and
 * connects at once. Until the first connection attempt has settled, calls wait for it (the caller's
 * own timer bounds the wait).
 */
export function createRedisStore(settings: RedisSettings, onError: (error: unknown) => void): RateLimitStore {
  let closed = false
  let client: ScriptedClient | undefined
  const opened = import('ioredis').then((ioredis) => {
    if (closed) throw new Error('the Redis store is closed')
    const redis = openClient(ioredis, settings)
    // Without a listener ioredis prints every reconnect failure itself.
    redis.on('error', onError)
    // ioredis gives up for good when a connect attempt itself fails (seen when a Sentinel failover
    // announcement cuts an attempt short); a sidecar must not, so it starts over.
    let attempts = 0
    redis.on('ready', () => (attempts = 0))
    redis.on('end', () => {
      if (closed) return
      setTimeout(() => {
        if (!closed) redis.connect().catch(() => {})
      }, reconnectDelay(++attempts))
    })
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
