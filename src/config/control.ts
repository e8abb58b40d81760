import * as v from 'valibot'
import { expectedGot } from '../core/config-error.ts'
import { fraction, positiveDuration, table } from '../core/schema-kit.ts'
import { duration } from '../core/units.ts'

/** Where the policy comes from when a central place serves it, and the base it may not loosen: `[control]`. */
export interface ControlConfig {
  /** http(s) URL of the policy text; absent: the local file is the policy. */
  source?: string
  pollMs: number
  /** Each wait between polls is pollMs × (1 ± jitter / 2). */
  jitter: number
  /** After failed polls the wait doubles, up to this. */
  backoffMaxMs: number
  timeoutMs: number
  /** A local copy of the last good policy, to start from when the source is down at boot. */
  cache?: string
  /** The locked base: an http(s) URL, or a file path (resolved beside the policy file). */
  base?: string
  /** A local copy of the last good base from a URL, to start from when it is unreachable at boot. */
  baseCache?: string
}

/** A base given as an http(s) URL is fetched and polled; anything else is a file path. */
export function isUrl(location: string): boolean {
  return /^https?:\/\//i.test(location)
}

const URL_EXAMPLE = 'an http:// or https:// URL like "https://config.internal/orders.toml"'

const BASE_EXAMPLE = 'an http(s) URL or a file path like "https://config.internal/base.toml" or "/etc/pillion/base.toml"'

function filePath(expected = 'a file path') {
  return v.pipe(v.string((issue) => expectedGot(expected, issue.input)), v.minLength(1, `expected ${expected}`))
}

/** Polling defaults: Traefik's HTTP provider polls every 5s, Kong's data planes pull every 30s; 15s sits between. */
export const controlSchema = v.pipe(
  table({
    source: v.optional(
      v.pipe(
        v.string((issue) => expectedGot(URL_EXAMPLE, issue.input)),
        v.check((text) => isUrl(text) && URL.canParse(text), (issue) => expectedGot(URL_EXAMPLE, issue.input)),
      ),
    ),
    poll: v.optional(positiveDuration(), '15s'),
    // Waits spread over a fifth of the interval; backoff capped at 120 s, as gRPC's connection backoff is.
    jitter: v.optional(fraction(), 0.2),
    backoff_max: v.optional(positiveDuration(), '2m'),
    timeout: v.optional(duration(), '5s'),
    cache: v.optional(filePath()),
    base: v.optional(
      v.pipe(
        filePath(BASE_EXAMPLE),
        v.check((text) => !isUrl(text) || URL.canParse(text), (issue) => expectedGot(BASE_EXAMPLE, issue.input)),
      ),
    ),
    base_cache: v.optional(filePath()),
  }),
  v.check((t) => t.source !== undefined || t.base !== undefined, 'expected source (the policy from a URL), base (a locked base policy), or both'),
  v.forward(
    v.partialCheck([['source'], ['cache']], ({ source, cache }) => cache === undefined || source !== undefined, 'applies to source only; a base from a URL has base_cache'),
    ['cache'],
  ),
  v.forward(
    v.partialCheck(
      [['base'], ['base_cache']],
      ({ base, base_cache }) => base_cache === undefined || (base !== undefined && isUrl(base)),
      'applies to a base from an http(s) URL only (a base file needs no copy)',
    ),
    ['base_cache'],
  ),
  v.transform((t): ControlConfig => ({
    pollMs: t.poll!,
    jitter: t.jitter,
    backoffMaxMs: t.backoff_max!,
    timeoutMs: t.timeout,
    ...(t.source === undefined ? {} : { source: t.source }),
    ...(t.cache === undefined ? {} : { cache: t.cache }),
    ...(t.base === undefined ? {} : { base: t.base }),
    ...(t.base_cache === undefined ? {} : { baseCache: t.base_cache }),
  })),
)
