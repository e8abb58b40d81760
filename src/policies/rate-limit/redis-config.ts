import * as v from 'valibot'
import { describeValue, expectedGot } from '../../core/config-error.ts'
import { arrayOf, name, oneOf, positiveDuration, table, text } from '../../core/schema-kit.ts'
import { convertedString, type Conversion } from '../../core/units.ts'

/** Where the shared counts live: one Redis, a Redis Cluster (seed nodes), or a master found through Sentinel. */
export type RedisServers =
  | { url: string }
  | { cluster: string[] }
  | { sentinels: string[]; masterName: string; username?: string; password?: string; sentinelPassword?: string }

/** [redis]: where store = "redis" limits count, shared by every replica. */
export type RedisSettings = RedisServers & {
  onError: 'allow' | 'deny'
  timeoutMs: number
}

const REDIS_URL_EXAMPLE = 'a URL like "redis://127.0.0.1:6379" or "rediss://user:password@host:6380/0"'
const SEED_EXAMPLE = 'a node URL like "redis://10.0.0.1:6379" or "rediss://user:password@10.0.0.1:6380"'
const SENTINEL_EXAMPLE = 'a Sentinel address "host:port" like "10.0.0.5:26379"'

function toRedisUrl(text: string, example = REDIS_URL_EXAMPLE): Conversion<string> {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return { problem: expectedGot(example, text) }
  }
  if ((url.protocol !== 'redis:' && url.protocol !== 'rediss:') || url.hostname === '') return { problem: expectedGot(example, text) }
  return { value: text }
}

function toSentinelAddress(text: string): Conversion<string> {
  const match = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+):(\d{1,5})$/i.exec(text)
  if (match === null || Number(match[2]) < 1 || Number(match[2]) > 65_535) return { problem: expectedGot(SENTINEL_EXAMPLE, text) }
  return { value: text }
}

const TARGET_KEYS = ['url', 'cluster', 'sentinels'] as const

/** A problem at one key of the [redis] table, so the error names `redis.<key>`. */
function at(table: Record<string, unknown>, key: string): [v.ObjectPathItem] {
  return [{ type: 'object', origin: 'value', input: table, key, value: table[key] }]
}

/** The top-level [redis] table. */
export const redisSchema = v.pipe(
  table({
    url: v.optional(convertedString(REDIS_URL_EXAMPLE, (text) => toRedisUrl(text))),
    cluster: v.optional(
      v.pipe(
        arrayOf(convertedString(SEED_EXAMPLE, (text) => toRedisUrl(text, SEED_EXAMPLE))),
        v.minLength(1, 'expected at least one seed node URL'),
      ),
    ),
    sentinels: v.optional(v.pipe(arrayOf(convertedString(SENTINEL_EXAMPLE, toSentinelAddress)), v.minLength(1, 'expected at least one Sentinel address'))),
    master_name: v.optional(name()),
    username: v.optional(text()),
    password: v.optional(text()),
    sentinel_password: v.optional(text()),
    // Fail open, as Envoy (failure_mode_deny = false) and Kong (fault_tolerant = true) do.
    on_error: v.optional(oneOf(['allow', 'deny']), 'allow'),
    // Envoy's rate limit filter waits 20 ms; a JS runtime needs room for a garbage-collection pause.
    timeout: v.optional(positiveDuration(), '50ms'),
  }),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return
    const redis = dataset.value as Record<string, unknown>
    const given = TARGET_KEYS.filter((key) => redis[key] !== undefined)
    if (given.length === 0) {
      addIssue({ message: 'expected exactly one of url (one Redis), cluster (seed nodes of a Redis Cluster) or sentinels (with master_name)' })
    }
    for (const extra of given.slice(1)) {
      addIssue({ message: `set only one of url, cluster and sentinels (${given.join(' and ')} are both set)`, path: at(redis, extra) })
    }
    if (given.length !== 1) return
    if (redis.sentinels !== undefined && redis.master_name === undefined) {
      addIssue({ message: 'required key missing: sentinels need the master_name Sentinel monitors, like "quotas"', path: at(redis, 'master_name') })
    }
    const sentinelOnly = ['master_name', 'username', 'password', 'sentinel_password'].filter((key) => redis[key] !== undefined)
    if (redis.sentinels === undefined) {
      for (const key of sentinelOnly) {
        addIssue({
          message: `${key} goes with sentinels only; with ${given[0]}, credentials go in the URL ("rediss://user:password@host:6380"), got ${describeValue(redis[key])}`,
          path: at(redis, key),
        })
      }
    }
    if (redis.cluster !== undefined) {
      const schemes = new Set((redis.cluster as string[]).map((url) => new URL(url).protocol))
      if (schemes.size > 1) addIssue({ message: 'expected every seed node on the same scheme: all redis:// or all rediss://', path: at(redis, 'cluster') })
    }
  }),
  v.transform(({ url, cluster, sentinels, master_name, username, password, sentinel_password, on_error, timeout }): RedisSettings => {
    const common = { onError: on_error, timeoutMs: timeout! }
    if (url !== undefined) return { url, ...common }
    if (cluster !== undefined) return { cluster, ...common }
    return {
      sentinels: sentinels!,
      masterName: master_name!,
      ...(username === undefined ? {} : { username }),
      ...(password === undefined ? {} : { password }),
      ...(sentinel_password === undefined ? {} : { sentinelPassword: sentinel_password }),
      ...common,
    }
  }),
)
