import * as v from 'valibot'
import { describeValue, expectedGot, type ConfigProblem } from '../../core/config-error.ts'
import { arrayOf, integer, name, oneOf, table } from '../../core/schema-kit.ts'
import { convertedString, parseDuration, parseRate, type Conversion } from '../../core/units.ts'
import { isTable } from '../shared/references.ts'
export type { RedisSettings } from './redis-config.ts'

/** Per limit, per route: keys one limit may hold in memory (about 210 bytes each on Node, so ~21 MiB). */
export const DEFAULT_MAX_KEYS = 100_000
/** Limits on one route; a bitmask per request tracks which admitted, so it must stay small. */
export const MAX_LIMITS_PER_ROUTE = 16

const KEY_EXAMPLE = '"client_ip", "route", "header:NAME" or "jwt:CLAIM"'
const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/i
const CLAIM = /^[A-Za-z0-9_.:-]+$/

function toKey(text: string): Conversion<RateLimitKey> {
  if (text === 'client_ip' || text === 'route') return { value: { from: text } }
  const [, from, what] = /^(header|jwt):(.+)$/.exec(text) ?? []
  if (from === 'header' && TOKEN.test(what!)) return { value: { from: 'header', name: what!.toLowerCase() } }
  if (from === 'jwt' && CLAIM.test(what!)) return { value: { from: 'jwt', claim: what! } }
  return { problem: expectedGot(KEY_EXAMPLE, text) }
}

const WINDOW_EXAMPLE = 'a window like "1s", "1m", "1h" or "1d"'
const MAX_WINDOW_MS = 366 * 86_400_000

/** A quota's window: a duration or whole days ("1d", "30d"), in whole seconds, as RateLimit-Policy's w is. */
function toWindowMs(text: string): Conversion<number> {
  const days = /^(\d+)d$/.exec(text)?.[1]
  const ms = days !== undefined ? Number(days) * 86_400_000 : parseDuration(text)
  if (ms === undefined) return { problem: expectedGot(WINDOW_EXAMPLE, text) }
  if (ms < 1000 || ms % 1000 !== 0) return { problem: expectedGot('a window of whole seconds, at least "1s"', text) }
  if (ms > MAX_WINDOW_MS) return { problem: expectedGot('a window of at most "366d"', text) }
  return { value: ms }
}

const RATE_EXAMPLE = 'a rate like "100/s", "6000/min" or "5/h"'

const rateAboveZero = convertedString(RATE_EXAMPLE, (text): Conversion<number> => {
  const perSecond = parseRate(text)
  if (perSecond === undefined) return { problem: expectedGot(RATE_EXAMPLE, text) }
  return perSecond > 0 ? { value: perSecond } : { problem: expectedGot('a rate above zero, like "100/s"', text) }
})

const entryTable = table({
  name: v.optional(name()),
  rate: v.optional(rateAboveZero),
  burst: v.optional(integer(1)),
  quota: v.optional(table({ limit: integer(1), per: convertedString(WINDOW_EXAMPLE, toWindowMs) })),
  // APISIX (remote_addr), Traefik (the client's address) and Kong (ip, without a consumer) count per client.
  key: v.optional(convertedString(KEY_EXAMPLE, toKey), 'client_ip'),
  mode: v.optional(oneOf(['enforce', 'dry_run']), 'enforce'),
  store: v.optional(oneOf(['local', 'redis']), 'local'),
  max_keys: v.optional(integer(1)),
})

type Entry = v.InferOutput<typeof entryTable>

const entrySchema = v.pipe(
  entryTable,
  v.check(
    ({ rate, quota }) => rate !== undefined || quota !== undefined,
    'expected rate (a token bucket) or quota (a fixed window), like rate = "100/s" or quota = { limit = 10000, per = "1d" }',
  ),
  v.forward(
    v.partialCheck([['rate'], ['quota']], ({ rate, quota }) => rate === undefined || quota === undefined, 'expected rate or quota, not both (list two limits for both)'),
    ['quota'],
  ),
  v.forward(
    v.partialCheck([['rate'], ['burst']], ({ rate, burst }) => burst === undefined || rate !== undefined, 'applies to rate only (a quota has no burst)'),
    ['burst'],
  ),
  v.forward(
    v.partialCheck(
      [['store'], ['max_keys']],
      ({ store, max_keys }) => max_keys === undefined || store === 'local',
      'applies to store = "local" only (Redis expires its own keys)',
    ),
    ['max_keys'],
  ),
)

function algorithmOf(entry: Entry): RateLimitAlgorithm {
  if (entry.quota !== undefined) return { kind: 'fixed_window', limit: entry.quota.limit, windowMs: entry.quota.per }
  const ratePerSecond = entry.rate!
  // Envoy-like: a bucket holds one second's worth unless told otherwise, and at least one token.
  return { kind: 'token_bucket', ratePerSecond, burst: entry.burst ?? Math.max(1, Math.ceil(ratePerSecond)) }
}

/**
 * `[[routes.rate_limit]]`, or `rate_limit = [ {...} ]` in [defaults]: every limit in the list must admit
 * a request. An empty list turns off the limits [defaults] would give a route.
 */
export const rateLimitsSchema = v.pipe(
  arrayOf(entrySchema),
  v.maxLength(MAX_LIMITS_PER_ROUTE, `expected at most ${MAX_LIMITS_PER_ROUTE} rate limits on one route`),
  v.transform((entries) =>
    entries.map(
      (entry, index): RateLimitPolicy => ({
        name: entry.name ?? `limit-${index}`,
        key: entry.key,
        algorithm: algorithmOf(entry),
        dryRun: entry.mode === 'dry_run',
        store: entry.store,
        maxKeys: entry.max_keys ?? DEFAULT_MAX_KEYS,
      }),
    ),
  ),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return
    const seen = new Map<string, number>()
    for (const [index, limit] of dataset.value.entries()) {
      const first = seen.get(limit.name)
      if (first === undefined) seen.set(limit.name, index)
      else {
        addIssue({
          message: `duplicate rate limit name ${describeValue(limit.name)} (also [${first}]); names tell limits apart in headers and Redis keys`,
          path: [{ type: 'array', origin: 'value', input: dataset.value, key: index, value: limit }],
        })
      }
    }
  }),
)

/**
 * Each `store = "redis"` limit of one route or [defaults] table needs a [redis] table. Read from the raw
 * document, so the problem is reported at the limit's own key path even when other parts are broken.
 */
export function redisStoreProblems(limits: unknown, at: string, document: Readonly<Record<string, unknown>>): ConfigProblem[] {
  if (document.redis !== undefined || !Array.isArray(limits)) return []
  return limits.flatMap((limit: unknown, index) =>
    isTable(limit) && limit.store === 'redis' ? [{ path: `${at}[${index}].store`, message: 'store = "redis" needs a [redis] table (url, cluster or sentinels)' }] : [],
  )
}

/** What a rate limit counts requests by; a request without the value counts against one shared "absent" bucket. */
export type RateLimitKey =
  | { from: 'client_ip' }
  | { from: 'route' }
  | { from: 'header'; name: string } // lower-case
  | { from: 'jwt'; claim: string }

export type RateLimitAlgorithm =
  | { kind: 'token_bucket'; ratePerSecond: number; burst: number }
  | { kind: 'fixed_window'; limit: number; windowMs: number }

export interface RateLimitPolicy {
  /** In RateLimit-Policy and Redis keys; default "limit-N" (its zero-based place in the list). */
  name: string
  key: RateLimitKey
  algorithm: RateLimitAlgorithm
  /** Counts and reports what it would reject, rejects nothing. */
  dryRun: boolean
  store: 'local' | 'redis'
  /** Local store only: most keys held at once; the least recently used goes first. */
  maxKeys: number
}

declare module '../../core/events.ts' {
  interface GatewayEventMap {
    /** One limit's verdict on one request; a dry-run limit's refusal let the request through. */
    rate_limit_decision: { route: string; limit: string; allowed: boolean; dryRun: boolean }
    /** Redis failed or was slow: the first failure, then at most one event per 10 s with the count since the last. */
    redis_error: { error: string; failures: number; onError: 'allow' | 'deny' }
    /** Redis answered again after a redis_error; failures not yet reported in one. */
    redis_recovered: { failures: number }
  }
}
