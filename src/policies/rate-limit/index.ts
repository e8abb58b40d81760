import { GatewayError } from '../../core/errors.ts'
import type { GatewayEventMap } from '../../core/events.ts'
import type { Exchange, Layer } from '../../proxy/exchange.ts'
import type { PolicyModule, RouteContext } from '../policy.ts'
import { rateLimitsSchema, redisStoreProblems } from './config.ts'
import { localLimiter, type LocalLimiter } from './local-store.ts'
import type { GlobalLimitStore, StoreDecision } from './global-store.ts'
import { logTally } from '../shared/log-tally.ts'
import type { RateLimitAlgorithm, RateLimitKey, RateLimitPolicy } from './config.ts'
import { rateLimitsWeakerThan } from './strictness.ts'

/**
 * `[[routes.rate_limit]]`: token buckets (rate + burst) and fixed-window quotas, counted in this
 * process or in Redis, keyed by client address, a header, a JWT claim or the whole route.
 */
export const rateLimitPolicy: PolicyModule<RateLimitPolicy[], 'rateLimits'> = {
  key: 'rate_limit',
  field: 'rateLimits',
  schema: rateLimitsSchema,
  builtInDefault: undefined,
  references: (value, at, file) => redisStoreProblems(value, at, file.document),
  weakerThan: rateLimitsWeakerThan,
  layer: (policies, context) => (policies.length > 0 ? rateLimitLayer(policies, context) : undefined),
}

declare module '../policy.ts' {
  interface GatewayDeps {
    /** The [redis] store that `store = "redis"` limits count in, when the file has [redis]. */
    globalLimits?: GlobalLimitStore
  }
}

/**
 * The key a request counts under when it has no value for the limit's key (no such header, no
 * claim, unknown address). Such requests share this one bucket rather than go unlimited: leaving
 * the header out must not be a way around the limit. A client that sends this very value joins the
 * same bucket, which it could have done by leaving the header out.
 */
export const ABSENT_KEY = '(absent)'
/** Longer key values are hashed, so a flood of huge header values cannot fill memory or Redis. */
export const MAX_KEY_LENGTH = 64

/** Reads a request's key for one limit; prepared once per route. */
export function keyReader(key: RateLimitKey): (exchange: Exchange) => string {
  switch (key.from) {
    case 'route':
      return () => '*'
    case 'client_ip':
      return (exchange) => {
        const address = exchange.client.remoteAddress
        if (address === '') return ABSENT_KEY
        // Node reports IPv4 clients of a dual-stack socket as ::ffff:a.b.c.d; Bun and Deno do not.
        return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address
      }
    case 'header': {
      const name = key.name
      return (exchange) => exchange.request.headers.get(name) || ABSENT_KEY
    }
    case 'jwt': {
      const claim = key.claim
      return (exchange) => {
        const value = exchange.claims?.[claim]
        if (typeof value === 'string') return value === '' ? ABSENT_KEY : value
        return typeof value === 'number' || typeof value === 'boolean' ? String(value) : ABSENT_KEY
      }
    }
  }
}

/** SHA-256 of a long key, base64url. Sending a hash as a value gains nothing: it takes knowing the value. */
async function hashedKey(value: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(value)))
  let binary = ''
  for (const byte of digest) binary += String.fromCharCode(byte)
  return `sha256:${btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')}`
}

/**
 * RateLimit-Policy's q and w for a token bucket: its rate as a whole number per whole window
 * (100/s is q=100;w=1, 5/h is q=5;w=3600, 0.5/s is q=30;w=60). The burst goes in pillion-burst.
 */
export function bucketQuota(ratePerSecond: number): { q: number; w: number } {
  for (const w of [1, 60, 3600, 86_400]) {
    const q = ratePerSecond * w
    if (q >= 1 && Math.abs(q - Math.round(q)) < 1e-6) return { q: Math.round(q), w }
  }
  return { q: 1, w: Math.ceil(1 / ratePerSecond) }
}

/** One item of RateLimit-Policy (draft-ietf-httpapi-ratelimit-headers-11 §3): `"name";q=100;w=1`. */
export function policyItem(name: string, algorithm: RateLimitAlgorithm): string {
  if (algorithm.kind === 'fixed_window') return `"${name}";q=${algorithm.limit};w=${Math.ceil(algorithm.windowMs / 1000)}`
  const { q, w } = bucketQuota(algorithm.ratePerSecond)
  return `"${name}";q=${q};w=${w};pillion-burst=${algorithm.burst}`
}

/**
 * Whole seconds for Retry-After and t, rounded up: waiting less than asked would be refused again.
 * The slack keeps float noise (1/3600 per second is not exact) from adding a second.
 */
const seconds = (ms: number): number => Math.max(0, Math.ceil(ms / 1000 - 1e-6))

interface PreparedLimit {
  policy: RateLimitPolicy
  name: string
  dryRun: boolean
  read: (exchange: Exchange) => string
  /** Its name as a structured-field string, for RateLimit. */
  item: string
  /** Set for store = "local". */
  counters: LocalLimiter | undefined
  /** Set for store = "redis": where its keys live. */
  prefix: string
  admitted: GatewayEventMap['rate_limit_decision']
  refused: GatewayEventMap['rate_limit_decision']
}

/** Wall clock for fixed windows (they line up with the calendar), monotonic clock for buckets. */
export interface RateLimitClocks {
  monotonic(): number
  wall(): number
}

const systemClocks: RateLimitClocks = { monotonic: () => performance.now(), wall: () => Date.now() }

/**
 * Admits a request when every limit on the route admits it, else answers 429 rate_limited with
 * Retry-After. Local limits decide first, synchronously, so concurrent requests are counted exactly;
 * Redis limits then decide in one round trip each, in parallel. A refused request gives back what the
 * local limits had taken for it. Dry-run limits count and report, never refuse, and stay out of the
 * headers. Responses carry RateLimit-Policy (every enforced limit) and RateLimit (the one with the
 * least left).
 *
 * @example rateLimitLayer([{ name: 'api', key: { from: 'client_ip' }, algorithm: { kind: 'token_bucket', ratePerSecond: 100, burst: 200 }, dryRun: false, store: 'local', maxKeys: 100_000 }], context)
 */
export function rateLimitLayer(
  policies: readonly RateLimitPolicy[],
  context: RouteContext,
  store: GlobalLimitStore | undefined = context.gateway.globalLimits,
  clocks: RateLimitClocks = systemClocks,
): Layer {
  const route = context.route.name
  const events = context.events
  if (store === undefined && policies.some((policy) => policy.store === 'redis')) {
    throw new Error(`route ${route}: a rate limit uses store = "redis" but the gateway has no Redis store`)
  }
  const limits = policies.map((policy): PreparedLimit => {
    const { name, dryRun, key, algorithm, maxKeys } = policy
    const clock = algorithm.kind === 'token_bucket' ? clocks.monotonic : clocks.wall
    return {
      policy,
      name,
      dryRun,
      read: keyReader(key),
      item: `"${name}"`,
      // Buckets survive a reload while what they count is unchanged; switching dry_run to enforce keeps them.
      counters:
        policy.store === 'local'
          ? context.keep(`rate-limit:${name}`, { key, algorithm, maxKeys }, () => localLimiter(algorithm, maxKeys, clock))
          : undefined,
      prefix: policy.store === 'redis' ? store!.keyPrefix(route, name) : '',
      admitted: Object.freeze({ route, limit: name, allowed: true, dryRun }),
      refused: Object.freeze({ route, limit: name, allowed: false, dryRun }),
    }
  })
  const local = limits.filter((limit) => limit.counters !== undefined)
  const shared = limits.filter((limit) => limit.counters === undefined)
  const enforced = limits.filter((limit) => !limit.dryRun)
  const policyHeader = enforced.length > 0 ? enforced.map((limit) => policyItem(limit.name, limit.policy.algorithm)).join(', ') : undefined
  const count = limits.length
  const localIndex = local.map((limit) => limits.indexOf(limit))
  const sharedIndex = shared.map((limit) => limits.indexOf(limit))

  /** Each limit's key for this request; a promise only when some value is long enough to hash. */
  const keysOf = (exchange: Exchange): string[] | Promise<string[]> => {
    const keys = new Array<string>(count)
    let long = false
    for (let i = 0; i < count; i++) {
      const key = limits[i]!.read(exchange)
      keys[i] = key
      if (key.length > MAX_KEY_LENGTH) long = true
    }
    if (!long) return keys
    return Promise.all(keys.map((key) => (key.length > MAX_KEY_LENGTH ? hashedKey(key) : key)))
  }

  const sharedDecisions = (keys: string[]): Promise<Array<StoreDecision | undefined>> =>
    Promise.all(shared.map((limit, j) => store!.take(limit.prefix + keys[sharedIndex[j]!]!, limit.policy.algorithm)))

  return (next) =>
    async function rateLimit(exchange: Exchange): Promise<Response> {
      const found = keysOf(exchange)
      const keys = Array.isArray(found) ? found : await found
      /** Bit i set: limit i (local, enforced) took from its allowance for this request. */
      let taken = 0
      let refusedBy: PreparedLimit | undefined
      let retryMs = 0
      let storeDown = false
      let tightest: PreparedLimit | undefined
      let tightestRemaining = Number.POSITIVE_INFINITY
      let tightestResetMs = 0

      for (const i of localIndex) {
        const limit = limits[i]!
        const counters = limit.counters!
        const allowed = counters.take(keys[i]!)
        events.emit('rate_limit_decision', allowed ? limit.admitted : limit.refused)
        if (limit.dryRun) continue
        if (allowed) {
          taken |= 1 << i
          if (counters.remaining < tightestRemaining) {
            tightest = limit
            tightestRemaining = counters.remaining
            tightestResetMs = counters.resetMs
          }
        } else if (refusedBy === undefined || counters.retryMs > retryMs) {
          refusedBy = limit
          retryMs = counters.retryMs
        }
      }

      if (refusedBy === undefined && shared.length > 0) {
        const decisions = await sharedDecisions(keys)
        for (let j = 0; j < decisions.length; j++) {
          const limit = limits[sharedIndex[j]!]!
          const decision = decisions[j]
          if (decision === undefined) {
            const allowed = store!.onError === 'allow'
            events.emit('rate_limit_decision', allowed ? limit.admitted : limit.refused)
            if (allowed || limit.dryRun || refusedBy !== undefined) continue
            refusedBy = limit
            retryMs = 1000
            storeDown = true
            continue
          }
          events.emit('rate_limit_decision', decision.allowed ? limit.admitted : limit.refused)
          if (limit.dryRun) continue
          if (decision.allowed) {
            if (decision.remaining < tightestRemaining) {
              tightest = limit
              tightestRemaining = decision.remaining
              tightestResetMs = decision.resetMs
            }
          } else if (refusedBy === undefined || storeDown || decision.retryMs > retryMs) {
            // A real refusal tells the client more than a store failure does, so it wins the headers.
            refusedBy = limit
            retryMs = decision.retryMs
            storeDown = false
          }
        }
      }

      if (refusedBy !== undefined) {
        if (taken !== 0) for (const i of localIndex) if ((taken & (1 << i)) !== 0) limits[i]!.counters!.refund(keys[i]!)
        const wait = Math.max(1, seconds(retryMs))
        const error = storeDown
          ? new GatewayError('rate_limited', 'the rate limit store is unavailable and [redis] on_error is "deny"')
          : new GatewayError('rate_limited', `rate limit "${refusedBy.name}" exceeded; retry in ${wait}s`)
        const headers: Record<string, string> = { 'retry-after': String(wait) }
        if (policyHeader !== undefined) headers['ratelimit-policy'] = policyHeader
        if (!storeDown) headers.ratelimit = `${refusedBy.item};r=0;t=${wait}`
        error.headers = headers
        throw error
      }

      const status = tightest === undefined ? undefined : `${tightest.item};r=${tightestRemaining};t=${seconds(tightestResetMs)}`
      let response: Response
      try {
        response = await next(exchange)
      } catch (error) {
        if (error instanceof GatewayError && policyHeader !== undefined) {
          error.headers = { ...error.headers, 'ratelimit-policy': policyHeader, ...(status === undefined ? {} : { ratelimit: status }) }
        }
        throw error
      }
      if (policyHeader !== undefined) response.headers.append('ratelimit-policy', policyHeader)
      if (status !== undefined) response.headers.append('ratelimit', status)
      return response
    }
}

export interface DryRunReport {
  route: string
  limit: string
  /** Requests the limit would have refused since the last report. */
  would_reject: number
}

/**
 * A rate_limit_decision listener for logs: counts dry-run refusals per route and limit and hands on a
 * report at most once per intervalMs for each, so a new limit can be watched without flooding the log.
 */
export function dryRunReporter(
  report: (summary: DryRunReport) => void,
  intervalMs = 1000,
  now: () => number = () => performance.now(),
): (event: GatewayEventMap['rate_limit_decision']) => void {
  const tally = logTally(intervalMs, now)
  return (event) => {
    if (event.allowed || !event.dryRun) return
    const count = tally(`${event.route}\u0000${event.limit}`)
    if (count !== undefined) report({ route: event.route, limit: event.limit, would_reject: count })
  }
}
