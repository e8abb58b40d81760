import { ConfigError } from '../core/config-error.ts'
import type { Config } from './types.ts'

/** A base pinned from outside the policy file: `PILLION_BASE` (and `PILLION_BASE_CACHE`), set by the platform's deployment. */
export interface PinnedBase {
  base: string
  baseCache?: string
}

/** Polling defaults (the schema's: poll "15s", timeout "5s", jitter 0.2, backoff_max "2m") for a [control] that exists only because PILLION_BASE pins a base. */
const PINNED_CONTROL = { pollMs: 15_000, timeoutMs: 5_000, jitter: 0.2, backoffMaxMs: 120_000 }

/**
 * The config with the pinned base in its [control]. The file may leave `base` out or name the same
 * one; naming another is a load error, since the pin exists so that the file cannot move the base.
 */
export function pinBase(config: Config, pinned: PinnedBase | undefined): Config {
  if (pinned === undefined) return config
  const own = config.control?.base
  if (own !== undefined && own !== pinned.base) {
    throw new ConfigError(config.source, [{ path: 'control.base', message: `is pinned by PILLION_BASE to ${JSON.stringify(pinned.base)}; leave it out or name the same base, got ${JSON.stringify(own)}` }])
  }
  const baseCache = pinned.baseCache ?? config.control?.baseCache
  return { ...config, control: { ...PINNED_CONTROL, ...config.control, base: pinned.base, ...(baseCache === undefined ? {} : { baseCache }) } }
}
