import * as v from 'valibot'
import { expectedGot } from '../core/config-error.ts'
import { fraction, positiveDuration, table } from '../core/schema-kit.ts'
import { duration } from '../core/units.ts'

/** Where the policy comes from when a central place serves it: `[control]`. */
export interface ControlConfig {
  /** http(s) URL of the policy text. */
  source: string
  pollMs: number
  /** Each wait between polls is pollMs × (1 ± jitter / 2). */
  jitter: number
  /** After failed polls the wait doubles, up to this. */
  backoffMaxMs: number
  timeoutMs: number
  /** A local copy of the last good policy, to start from when the source is down at boot. */
  cache?: string
}

const URL_EXAMPLE = 'an http:// or https:// URL like "https://config.internal/orders.toml"'

/** Polling defaults: Traefik's HTTP provider polls every 5s, Kong's data planes pull every 30s; 15s sits between. */
export const controlSchema = v.pipe(
  table({
    source: v.pipe(
      v.string((issue) => expectedGot(URL_EXAMPLE, issue.input)),
      v.check((text) => /^https?:\/\//i.test(text) && URL.canParse(text), (issue) => expectedGot(URL_EXAMPLE, issue.input)),
    ),
    poll: v.optional(positiveDuration(), '15s'),
    // Waits spread over a fifth of the interval; backoff capped at 120 s, as gRPC's connection backoff is.
    jitter: v.optional(fraction(), 0.2),
    backoff_max: v.optional(positiveDuration(), '2m'),
    timeout: v.optional(duration(), '5s'),
    cache: v.optional(v.pipe(v.string((issue) => expectedGot('a file path', issue.input)), v.minLength(1, 'expected a file path'))),
  }),
  v.transform((t): ControlConfig => ({
    source: t.source,
    pollMs: t.poll!,
    jitter: t.jitter,
    backoffMaxMs: t.backoff_max!,
    timeoutMs: t.timeout,
    ...(t.cache === undefined ? {} : { cache: t.cache }),
  })),
)
