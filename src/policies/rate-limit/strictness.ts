import type { Weakening } from '../policy.ts'
import { atLeast, atMost, equal, keptOff, show } from '../shared/strictness.ts'
import type { RateLimitPolicy } from './config.ts'

/**
 * One limit against one locked limit: the same key (what is counted), the same algorithm with no
 * higher rate or burst, or no higher quota over no shorter window; enforced if the lock enforces;
 * counted in Redis if the lock counts there (a local count is per replica, so looser in total); and
 * for local counts no fewer keys held (an evicted key starts over).
 */
function limitWeakerThan(own: RateLimitPolicy, locked: RateLimitPolicy): Weakening[] {
  const key = equal('key', own.key, locked.key)
  const mode = keptOff('mode', own.dryRun, locked.dryRun).map((w) => ({ ...w, message: 'is locked to "enforce", got "dry_run"' }))
  const store = locked.store === 'redis' && own.store !== 'redis' ? [{ path: 'store', message: 'is locked to "redis" (one count for every replica), got "local"' }] : []
  const keys = own.store === 'local' && locked.store === 'local' ? atLeast('max_keys', own.maxKeys, locked.maxKeys) : []
  const a = own.algorithm
  const b = locked.algorithm
  let algorithm: Weakening[]
  if (a.kind === 'token_bucket' && b.kind === 'token_bucket') {
    algorithm = [...atMost('rate', a.ratePerSecond, b.ratePerSecond, '/s'), ...atMost('burst', a.burst, b.burst)]
  } else if (a.kind === 'fixed_window' && b.kind === 'fixed_window') {
    algorithm = [...atMost('quota.limit', a.limit, b.limit), ...atLeast('quota.per', a.windowMs, b.windowMs, 'ms')]
  } else {
    algorithm = [{ path: b.kind === 'token_bucket' ? 'rate' : 'quota', message: `is locked to a ${b.kind === 'token_bucket' ? 'rate' : 'quota'}, got a ${a.kind === 'token_bucket' ? 'rate' : 'quota'}` }]
  }
  return [...key, ...algorithm, ...mode, ...store, ...keys]
}

/** A locked limit in the file's terms, for a message about a service that lacks one like it. */
function describeLimit(limit: RateLimitPolicy): string {
  const key = limit.key.from === 'header' ? `header:${limit.key.name}` : limit.key.from === 'jwt' ? `jwt:${limit.key.claim}` : limit.key.from
  const algorithm = limit.algorithm
  const terms =
    algorithm.kind === 'token_bucket'
      ? `rate ${algorithm.ratePerSecond}/s, burst ${algorithm.burst}`
      : `quota ${algorithm.limit} per ${algorithm.windowMs}ms`
  return `${terms}, key "${key}", store "${limit.store}"`
}

/**
 * Every locked limit needs one of the service's limits at least as strict (found by name first, for
 * the message, else any); the service may add limits of its own. An emptied list is weaker.
 */
export function rateLimitsWeakerThan(own: RateLimitPolicy[], locked: RateLimitPolicy[]): Weakening[] {
  const weakenings: Weakening[] = []
  for (const limit of locked) {
    if (own.some((candidate) => limitWeakerThan(candidate, limit).length === 0)) continue
    const namesake = own.findIndex((candidate) => candidate.name === limit.name)
    if (namesake === -1) {
      weakenings.push({ path: '', message: `no limit is at least as strict as the locked limit ${show(limit.name)} (${describeLimit(limit)})` })
      continue
    }
    for (const weakening of limitWeakerThan(own[namesake]!, limit)) weakenings.push({ ...weakening, path: `[${namesake}].${weakening.path}` })
  }
  return weakenings
}
