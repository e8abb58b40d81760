import type { ConfigStatus, ReloadOutcome } from '../admin/admin-api.ts'
import { ConfigError } from '../core/config-error.ts'
import { loadConfigText } from '../config/load.ts'
import type { SecretSources } from '../config/secrets.ts'
import type { Config } from '../config/types.ts'
import type { Logger } from '../core/log.ts'

export interface ReloaderOptions {
  /** The policy file's name, as errors and /config/status show it. */
  source: string
  /** The text that is running now. */
  initialText: string
  /** Reads the policy text again. */
  read: () => Promise<string>
  /** Validates and normalizes a text (loadConfigText by default, with `secrets` for its references). */
  load?: (text: string) => Config
  secrets?: SecretSources
  /** A text went into service. */
  applied?: (text: string) => void
  /** What the version hashes for a text: more than the text when the config depends on more (a locked base). */
  fingerprint?: (text: string) => string
  /** Puts a validated config in service; throws if it cannot (a listener address that will not bind). */
  apply: (config: Config) => Promise<void>
  /**
   * When the policy is unchanged: reads what it refers to again (certificates) and puts changes in
   * service; returns what changed, throws if the new files cannot be used.
   */
  refresh?: () => Promise<string[]>
  logger: Logger
  /** Told of each outcome, for metrics. */
  onOutcome?: (outcome: ReloadOutcome, version: string) => void
}

export interface Reloader {
  reload(trigger: string): Promise<ReloadOutcome>
  status(): ConfigStatus
  /** The hash of the running text. */
  readonly version: string
}

/** Hex SHA-256 of the policy text, shortened: the config's version in status, logs and metrics. */
export async function policyVersion(text: string): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text))
  return [...new Uint8Array(digest).subarray(0, 8)].map((byte) => byte.toString(16).padStart(2, '0')).join('')
}

/**
 * Re-reads, validates and applies the policy, one reload at a time: a request for a reload while one
 * runs is served by one more run after it. An invalid or unappliable policy never replaces the running
 * one; why is logged and kept for /config/status.
 */
export async function createReloader(options: ReloaderOptions): Promise<Reloader> {
  const fingerprint = options.fingerprint ?? ((text: string) => text)
  let version = await policyVersion(fingerprint(options.initialText))
  let loadedAt = new Date().toISOString()
  let lastReload: ReloadOutcome | undefined
  const counts = { succeeded: 0, failed: 0, unchanged: 0 }
  let running: Promise<ReloadOutcome> | undefined
  let queued: Promise<ReloadOutcome> | undefined
  let lastFailure: string | undefined

  async function attempt(trigger: string): Promise<ReloadOutcome> {
    const at = new Date().toISOString()
    let text: string
    try {
      text = await options.read()
    } catch (error) {
      return failed({ ok: false, trigger, at, error: `cannot read ${options.source}: ${(error as Error).message}` })
    }
    const nextVersion = await policyVersion(fingerprint(text))
    if (nextVersion === version) return unchanged(trigger, at)
    let config: Config
    try {
      config = (options.load ?? ((t: string) => loadConfigText(t, options.source, options.secrets)))(text)
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error
      return failed({ ok: false, trigger, at, version: nextVersion, error: 'invalid policy', problems: error.problems })
    }
    try {
      await options.apply(config)
    } catch (error) {
      return failed({ ok: false, trigger, at, version: nextVersion, error: `cannot apply: ${(error as Error).message}` })
    }
    version = nextVersion
    loadedAt = at
    lastFailure = undefined
    options.applied?.(text)
    counts.succeeded++
    const outcome: ReloadOutcome = { ok: true, trigger, at, version, changed: true }
    options.logger.log('info', 'config reloaded', { version, trigger })
    options.onOutcome?.(outcome, version)
    return (lastReload = outcome)
  }

  /** The same policy text: what it refers to may still have changed (certificate files). */
  async function unchanged(trigger: string, at: string): Promise<ReloadOutcome> {
    let rotated: string[] = []
    try {
      rotated = (await options.refresh?.()) ?? []
    } catch (error) {
      return failed({ ok: false, trigger, at, version, error: `cannot rotate certificates: ${(error as Error).message}` })
    }
    lastFailure = undefined
    if (rotated.length === 0) {
      counts.unchanged++
      return (lastReload = { ok: true, trigger, at, version, changed: false })
    }
    counts.succeeded++
    const outcome: ReloadOutcome = { ok: true, trigger, at, version, changed: true, rotated }
    options.onOutcome?.(outcome, version)
    return (lastReload = outcome)
  }

  function failed(outcome: ReloadOutcome): ReloadOutcome {
    counts.failed++
    const problems = outcome.problems?.map((problem) => `${problem.path}: ${problem.message}`)
    // A source that stays down, or a bad policy that stays, is said once, not at every poll.
    const reason = JSON.stringify([outcome.error, problems])
    if (reason !== lastFailure) {
      lastFailure = reason
      options.logger.log('error', 'config reload rejected; the running config stays', { trigger: outcome.trigger, error: outcome.error, problems })
    }
    options.onOutcome?.(outcome, version)
    return (lastReload = outcome)
  }

  function reload(trigger: string): Promise<ReloadOutcome> {
    if (running === undefined) {
      running = attempt(trigger).finally(() => (running = undefined))
      return running
    }
    queued ??= running.then(() => {
      queued = undefined
      return reload(trigger)
    })
    return queued
  }

  return {
    reload,
    get version() {
      return version
    },
    status: () => ({ version, source: options.source, loadedAt, reloads: { ...counts }, lastReload }),
  }
}
