import { ConfigError } from '../core/config-error.ts'
import { loadConfigText } from '../config/load.ts'
import { hostSecrets, type SecretSources } from '../config/secrets.ts'
import type { Config } from '../config/types.ts'
import type { Logger } from '../core/log.ts'
import type { Runtime } from '../core/host.ts'
import { startPolling } from './poller.ts'
import { ControlSource } from './source.ts'

/** Where the running policy comes from: the local file, or the central source that file names. */
export interface PolicyFeed {
  /** The policy's name in errors and /config/status: the file path or the source URL. */
  readonly name: string
  readonly initial: { config: Config; text: string; origin: 'file' | 'source' | 'cache' }
  read(): Promise<string>
  load(text: string): Config
  /** A text went into service. */
  applied(text: string): void
  /** Starts whatever tells us to look again; returns how to stop it. */
  watch(reload: (trigger: string) => Promise<unknown>): () => void
}

type Host = Pick<Runtime, 'readTextFile' | 'readTextFileSync' | 'writeTextFile' | 'watchFile' | 'env'>

export async function openPolicyFeed(path: string, bootstrap: { config: Config; text: string }, host: Host, logger: Logger): Promise<PolicyFeed> {
  const control = bootstrap.config.control
  const watchLocal = (reload: (trigger: string) => Promise<unknown>) => host.watchFile(path, () => void reload('file'))
  if (control === undefined) {
    return {
      name: path,
      initial: { ...bootstrap, origin: 'file' },
      read: () => host.readTextFile(path),
      load: (text) => loadConfigText(text, path, hostSecrets(host)),
      applied() {},
      watch: watchLocal,
    }
  }
  const source = new ControlSource(control)
  // The central policy may not move the gateway to another source: [control] stays the bootstrap's.
  const load = (text: string): Config => ({ ...loadConfigText(text, source.url, centralSecrets(host)), control })
  const cache = control.cache
  const keepCopy = (text: string) => {
    if (cache === undefined) return
    host.writeTextFile(cache, text).catch((error: Error) => logger.log('warn', 'cannot write the policy cache', { cache, error: error.message }))
  }
  const initial = await firstPolicy(source, load, cache, host, logger)
  if (initial.origin === 'source') keepCopy(initial.text)
  return {
    name: source.url,
    initial: initial.origin === 'file' ? { ...bootstrap, origin: 'file' } : initial,
    read: () => source.read(),
    load,
    applied: keepCopy,
    watch(reload) {
      const stopPolling = startPolling(control, async () => {
        await reload('control')
        return source.answered
      })
      const stopLocal = watchLocal(reload)
      return () => {
        stopPolling()
        stopLocal()
      }
    },
  }
}

/**
 * A central policy is written once for many sidecars: `${env:…}` is each sidecar's own environment,
 * as for a local file. `${file:…}` must be an absolute path on the sidecar (a mounted secret): there
 * is no policy file for a relative path to be beside, and a URL is not a directory to read from.
 */
function centralSecrets(host: Host): SecretSources {
  const local = hostSecrets(host)
  return {
    env: local.env,
    readFile(path) {
      if (!path.startsWith('/') && !/^[a-z]:[\\/]/i.test(path)) throw new Error('a policy from a central source may read absolute paths only')
      return local.readFile!(path)
    },
  }
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
