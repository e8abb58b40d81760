import type { Config } from '../config/types.ts'
import type { Runtime, ServeOptions, Server } from '../core/host.ts'
import type { Logger } from '../core/log.ts'
import { readTls } from './listener-setup.ts'
import { tlsFileProblems } from './tls-files.ts'

type ListenerTexts = NonNullable<ServeOptions['tls']>

const textsOf = (tls: ListenerTexts) => `${tls.cert}\0${tls.key}\0${tls.clientCa ?? ''}`

/**
 * Certificate rotation without a restart: the TLS files of listeners and upstreams are read again on
 * a change to any of them (watched), on SIGHUP and on POST /reload. A listener whose texts changed
 * gets them for new handshakes (Server.updateTls); upstreams whose files changed make new connections
 * with them (Runtime.upstreamTlsFilesChanged). Connections already open go on as they are. New
 * files that do not parse, or a key that is not its certificate's, are refused and the old stay.
 */
export class ServedCertificates {
  readonly #runtime: Runtime
  readonly #logger: Logger
  readonly #refusedOn: (listener: string) => (names: readonly string[], remoteAddress: string) => void
  readonly #listenerTexts = new Map<string, string>()
  #upstreamTexts = new Map<string, string>()
  #unwatch: Array<() => void> = []

  /** refusedOn: what to tell when a listener's allowed_sans refuse a client. */
  constructor(runtime: Runtime, logger: Logger, refusedOn: (listener: string) => (names: readonly string[], remoteAddress: string) => void) {
    this.#runtime = runtime
    this.#logger = logger
    this.#refusedOn = refusedOn
  }

  /** A listener was bound with these texts. */
  bound(listener: string, tls: ListenerTexts | undefined): void {
    if (tls === undefined) this.#listenerTexts.delete(listener)
    else this.#listenerTexts.set(listener, textsOf(tls))
  }

  /** Reads what upstreams use now, so a later change is seen as one. */
  async remember(config: Config): Promise<void> {
    this.#upstreamTexts = await this.#readUpstreams(config)
  }

  /** Reads every TLS file of the config again and puts what changed in service; returns the keys that rotated. */
  async rotate(config: Config, serverOf: (listener: string) => Server | undefined): Promise<string[]> {
    const problems = await tlsFileProblems(config, this.#runtime)
    if (problems.length > 0) throw new Error(problems.join('; '))
    const rotated: string[] = []
    for (const listener of Object.values(config.listeners)) {
      const server = serverOf(listener.name)
      if (listener.tls === undefined || server === undefined) continue
      const texts = await readTls(listener.tls, (path) => this.#runtime.readTextFile(path), this.#refusedOn(listener.name))
      if (this.#listenerTexts.get(listener.name) === textsOf(texts)) continue
      await server.updateTls(texts)
      this.bound(listener.name, texts)
      rotated.push(`listeners.${listener.name}.tls`)
    }
    const upstreamTexts = await this.#readUpstreams(config)
    // An upstream new to this config has nothing to rotate from: its clients are built afresh anyway.
    const before = this.#upstreamTexts
    const changed = [...upstreamTexts].filter(([name, texts]) => before.has(name) && before.get(name) !== texts).map(([name]) => `upstreams.${name}`)
    this.#upstreamTexts = upstreamTexts
    if (changed.length > 0) this.#runtime.upstreamTlsFilesChanged()
    rotated.push(...changed)
    if (rotated.length > 0) this.#logger.log('info', 'certificates rotated', { keys: rotated })
    return rotated
  }

  /** Watches every TLS file the config names (and no others): a change calls back. */
  watch(config: Config, onChange: () => void): void {
    this.unwatch()
    this.#unwatch = [...new Set(tlsFiles(config))].map((path) => this.#runtime.watchFile(path, onChange))
  }

  unwatch(): void {
    for (const stop of this.#unwatch) stop()
    this.#unwatch = []
  }

  async #readUpstreams(config: Config): Promise<Map<string, string>> {
    const texts = new Map<string, string>()
    for (const upstream of Object.values(config.upstreams)) {
      const tls = upstream.tls
      if (tls === undefined) continue
      const files = [tls.ca, tls.cert, tls.key].filter((path) => path !== undefined)
      const read = await Promise.all(files.map((path) => this.#runtime.readTextFile(path).catch(() => '')))
      texts.set(upstream.name, read.join('\0'))
    }
    return texts
  }
}

function tlsFiles(config: Config): string[] {
  const files: string[] = []
  for (const { tls } of Object.values(config.listeners)) if (tls !== undefined) files.push(tls.cert, tls.key, ...(tls.clientCa === undefined ? [] : [tls.clientCa]))
  for (const { tls } of Object.values(config.upstreams)) if (tls !== undefined) files.push(...[tls.ca, tls.cert, tls.key].filter((path) => path !== undefined))
  return files
}
