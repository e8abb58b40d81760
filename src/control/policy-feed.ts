import { ConfigError } from '../core/config-error.ts'
import { loadConfigText } from '../config/load.ts'
import { hostSecrets } from '../config/secrets.ts'
import type { Config } from '../config/types.ts'
import type { ControlConfig } from '../config/control.ts'
import { pinBase, type PinnedBase } from '../config/pin-base.ts'
import type { Logger } from '../core/log.ts'
import type { Runtime } from '../core/host.ts'
import { centralSecrets } from './central-secrets.ts'
import { openLockedBase, type LockedBaseFeed } from './locked-base.ts'
import { startPolling } from './poller.ts'
import { readSettled } from './settled-read.ts'
import { ControlSource } from './source.ts'

/** Where the running policy comes from: the local file, or the central source that file names. */
export interface PolicyFeed {
  /** The policy's name in errors and /config/status: the file path or the source URL. */
  readonly name: string
  readonly initial: { config: Config; text: string; origin: 'file' | 'source' | 'cache' }
  /** The locked base the policy may not loosen, when [control] names one. */
  readonly base: LockedBaseFeed | undefined
  /** Reads the policy text again (and the base before it). */
  read(): Promise<string>
  load(text: string): Config
  /** What the config's version covers: the policy text, and the base's when there is one. */
  fingerprint(text: string): string
  /** A text went into service. */
  applied(text: string): void
  /** Starts whatever tells us to look again; returns how to stop it. */
  watch(reload: (trigger: string) => Promise<unknown>): () => void
}

type Host = Pick<Runtime, 'readTextFile' | 'readTextFileSync' | 'writeTextFile' | 'watchFile' | 'env'>

/**
 * Opens the policy named by the bootstrap file. Throws a ConfigError when the policy loosens its
 * locked base, and an Error when the base cannot be had at all: either way the gateway does not start.
 */
export async function openPolicyFeed(
  path: string,
  bootstrap: { config: Config; text: string },
  host: Host,
  logger: Logger,
  pinned?: PinnedBase,
): Promise<PolicyFeed> {
  const control = bootstrap.config.control
  const base = control?.base === undefined ? undefined : await openLockedBase({ ...control, base: control.base }, host, logger)
  const loadFile = (text: string): Config => sameBase(pinBase(loadConfigText(text, path, hostSecrets(host), base?.current), pinned), control, path)
  const common = {
    base,
    fingerprint: (text: string) => (base === undefined ? text : `${text}\n\0${base.text}`),
    async readWith(read: () => Promise<string>): Promise<string> {
      await base?.refresh()
      return read()
    },
    watchWith(reload: (trigger: string) => Promise<unknown>, own: () => () => void): () => void {
      const stopBase = base?.watch((trigger) => void reload(trigger), host, control!.pollMs)
      const stopOwn = own()
      return () => {
        stopBase?.()
        stopOwn()
      }
    },
  }
  const watchLocal = (reload: (trigger: string) => Promise<unknown>) => host.watchFile(path, () => void reload('file'))
  const bootstrapConfig = () => (base === undefined ? bootstrap.config : loadFile(bootstrap.text))
  if (control?.source === undefined) {
    return {
      name: path,
      base,
      initial: { config: bootstrapConfig(), text: bootstrap.text, origin: 'file' },
      read: () => common.readWith(() => readSettled(() => host.readTextFile(path))),
      load: loadFile,
      fingerprint: common.fingerprint,
      applied: () => base?.committed(),
      watch: (reload) => common.watchWith(reload, () => watchLocal(reload)),
    }
  }
  const source = new ControlSource({ url: control.source, timeoutMs: control.timeoutMs })
  // The central policy may not move the gateway to another source or base: [control] stays the bootstrap's.
  const load = (text: string): Config => ({ ...loadConfigText(text, source.url, centralSecrets(host), base?.current), control })
  const cache = control.cache
  const keepCopy = (text: string) => {
    if (cache === undefined) return
    host.writeTextFile(cache, text).catch((error: Error) => logger.log('warn', 'cannot write the policy cache', { cache, error: error.message }))
  }
  const initial = await firstPolicy(source, load, cache, host, logger)
  if (initial.origin === 'source') keepCopy(initial.text)
  return {
    name: source.url,
    base,
    initial: initial.origin === 'file' ? { config: bootstrapConfig(), text: bootstrap.text, origin: 'file' } : initial,
    read: () => common.readWith(() => source.read()),
    load,
    fingerprint: common.fingerprint,
    applied(text) {
      base?.committed()
      keepCopy(text)
    },
    watch(reload) {
      // The source's poll reads the base too; a base file is still watched.
      return common.watchWith(reload, () => {
        const stopPolling = startPolling(control, async () => {
          await reload('control')
          return source.answered
        })
        const stopLocal = watchLocal(reload)
        return () => {
          stopPolling()
          stopLocal()
        }
      })
    },
  }
}

/**
 * The base is fixed at start, for the local file as for a central policy: a reload that removed or
 * moved `[control] base` would otherwise be a way out of the very locks it names.
 */
function sameBase(config: Config, running: ControlConfig | undefined, path: string): Config {
  const next = config.control?.base
  if (next === running?.base) return config
  const problem = running?.base === undefined ? 'no base was locked at start' : `the gateway started with ${running.base}`
  throw new ConfigError(path, [{ path: 'control.base', message: `cannot change while the gateway runs (${problem}); restart it to change the base` }])
}

/** The source if it answers with a valid policy; else the last good copy; else the bootstrap file itself. */
async function firstPolicy(
  source: ControlSource,
  load: (text: string) => Config,
  cache: string | undefined,
  host: Host,
  logger: Logger,
): Promise<{ config: Config; text: string; origin: 'source' | 'cache' } | { origin: 'file' }> {
  try {
    const text = await source.read()
    return { config: load(text), text, origin: 'source' }
  } catch (error) {
    logger.log('warn', 'the policy source is unavailable at start', { source: source.url, error: describe(error) })
  }
  if (cache !== undefined) {
    try {
      const text = await host.readTextFile(cache)
      const config = load(text)
      logger.log('info', 'starting from the cached copy of the central policy', { cache })
      return { config, text, origin: 'cache' }
    } catch (error) {
      logger.log('warn', 'the policy cache is unusable', { cache, error: describe(error) })
    }
  }
  logger.log('warn', 'starting from the local policy file until the source answers', { source: source.url })
  return { origin: 'file' }
}

function describe(error: unknown): string {
  return error instanceof ConfigError ? error.message : (error as Error)?.message ?? String(error)
}
