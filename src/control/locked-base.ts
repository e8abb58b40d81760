import type { BaseStatus } from '../admin/admin-api.ts'
import { loadBaseText } from '../config/base-file.ts'
import { isUrl, type ControlConfig } from '../config/control.ts'
import { baseLocks, type LockedBase } from '../config/locks.ts'
import { hostSecrets } from '../config/secrets.ts'
import { ConfigError } from '../core/config-error.ts'
import type { Runtime } from '../core/host.ts'
import type { Logger } from '../core/log.ts'
import { besidePolicyFile } from '../core/policy-file.ts'
import { centralSecrets } from './central-secrets.ts'
import { policyVersion } from './reloader.ts'
import { readSettled } from './settled-read.ts'
import { ControlSource } from './source.ts'

type Host = Pick<Runtime, 'readTextFile' | 'readTextFileSync' | 'writeTextFile' | 'watchFile' | 'env'>

interface Generation {
  base: LockedBase
  text: string
  version: string
  origin: BaseStatus['origin']
  loadedAt: string
}

/**
 * The locked base ([control] base) across reloads: read again before each reload, so a tightened
 * base applies at the next one; a base that is unreachable or invalid keeps the last good one. The
 * base the running policy was checked against stays "in force" until a policy passes a newer one.
 */
export class LockedBaseFeed {
  readonly location: string
  readonly #read: () => Promise<string>
  readonly #parse: (text: string) => LockedBase
  readonly #keepCopy: (text: string) => void
  readonly #logger: Logger
  #latest: Generation
  #inForce: Generation
  #error: string | undefined

  constructor(location: string, read: () => Promise<string>, parse: (text: string) => LockedBase, keepCopy: (text: string) => void, logger: Logger, first: Generation) {
    this.location = location
    this.#read = read
    this.#parse = parse
    this.#keepCopy = keepCopy
    this.#logger = logger
    this.#latest = first
    this.#inForce = first
  }

  /** The newest good base: what a policy is checked against. */
  get current(): LockedBase {
    return this.#latest.base
  }

  /** Its text, which the policy's version covers too. */
  get text(): string {
    return this.#latest.text
  }

  async refresh(): Promise<void> {
    let text: string
    let base: LockedBase
    try {
      text = await this.#read()
      if (text === this.#latest.text) {
        this.#error = undefined
        // Started from base_cache, and the URL now serves the same base: it is the URL's now.
        if (this.#latest.origin === 'cache') this.#latest.origin = 'url'
        return
      }
      base = this.#parse(text)
    } catch (error) {
      const reason = describe(error)
      // A base that stays down, or stays invalid, is said once, not at every poll.
      if (reason !== this.#error) this.#logger.log('warn', 'the locked base cannot be read again; keeping the last good one', { base: this.location, error: reason })
      this.#error = reason
      return
    }
    this.#error = undefined
    this.#latest = { base, text, version: await policyVersion(text), origin: isUrl(this.location) ? 'url' : 'file', loadedAt: new Date().toISOString() }
    if (isUrl(this.location)) this.#keepCopy(text)
  }

  /** A policy checked against the newest base went into service. */
  committed(): void {
    this.#inForce = this.#latest
  }

  status(): BaseStatus {
    const { version, origin, loadedAt, base } = this.#inForce
    const status: BaseStatus = { source: this.location, origin, version, loadedAt, locks: baseLocks(base) }
    if (this.#latest !== this.#inForce) status.pending = this.#latest.version
    if (this.#error !== undefined) status.error = this.#error
    return status
  }

  /** A base from a URL is polled every [control] poll; a base file is watched. */
  watch(reload: (trigger: string) => void, host: Host, pollMs: number): () => void {
    if (!isUrl(this.location)) return host.watchFile(this.location, () => reload('base'))
    const poll = setInterval(() => reload('base'), pollMs)
    return () => clearInterval(poll)
  }
}

/**
 * Reads the base at start. A base from a URL that is down or invalid falls back to base_cache; with
 * no usable copy the gateway refuses to start: running without the floor the platform set would
 * serve routes less protected than promised, and nothing would say so.
 */
export async function openLockedBase(control: ControlConfig & { base: string }, host: Host, logger: Logger): Promise<LockedBaseFeed> {
  const location = control.base
  const fromUrl = isUrl(location)
  const source = fromUrl ? new ControlSource({ url: location, timeoutMs: control.timeoutMs }) : undefined
  const read = source !== undefined ? () => source.read() : () => readSettled(() => host.readTextFile(location))
  const secrets = fromUrl ? centralSecrets(host) : hostSecrets(host)
  const resolveFile = fromUrl ? (path: string) => path : (path: string) => besidePolicyFile(path, location)
  const parse = (text: string) => loadBaseText(text, location, secrets, resolveFile)
  const cache = control.baseCache
  const keepCopy = (text: string) => {
    if (cache === undefined) return
    host.writeTextFile(cache, text).catch((error: Error) => logger.log('warn', 'cannot write the base cache', { cache, error: error.message }))
  }
  const generation = async (text: string, origin: BaseStatus['origin']): Promise<Generation> => ({
    base: parse(text),
    text,
    version: await policyVersion(text),
    origin,
    loadedAt: new Date().toISOString(),
  })
  let first: Generation
  try {
    first = await generation(await read(), fromUrl ? 'url' : 'file')
    if (fromUrl) keepCopy(first.text)
  } catch (error) {
    if (cache === undefined) {
      const hint = fromUrl ? '; set [control] base_cache to start from the last good copy' : ''
      throw new Error(`the locked base ${location} is unusable, so the gateway does not start without it: ${describe(error)}${hint}`)
    }
    logger.log('warn', 'the locked base is unusable at start; trying its cached copy', { base: location, error: describe(error) })
    try {
      first = await generation(await host.readTextFile(cache), 'cache')
    } catch (cacheError) {
      throw new Error(`the locked base ${location} is unusable (${describe(error)}) and so is its base_cache ${cache} (${describe(cacheError)}); the gateway does not start without it`)
    }
    logger.log('info', 'starting from the cached copy of the locked base', { base: location, cache })
  }
  return new LockedBaseFeed(location, read, parse, keepCopy, logger, first)
}

function describe(error: unknown): string {
  return error instanceof ConfigError ? error.message : ((error as Error)?.message ?? String(error))
}
