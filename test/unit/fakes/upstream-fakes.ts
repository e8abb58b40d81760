// Test doubles for upstream unit tests: a manual clock, a scripted upstream client and discovery host.
import { EventBus, type GatewayEventMap, type GatewayEventName } from '../../../src/core/events.ts'
import type { Endpoint } from '../../../src/upstream/balancer.ts'
import type { Timers } from '../../../src/core/timers.ts'
import { createUpstream, type UpstreamDeps, type UpstreamRuntime } from '../../../src/upstream/upstream.ts'
import type { DiscoveryHost, UpstreamClient, UpstreamRequest } from '../../../src/core/host.ts'
import type { UpstreamConfig } from '../../../src/upstream/config.ts'

interface Scheduled {
  at: number
  callback: () => void
}

/** Time moves only when a test says so; due callbacks run in time order, with promises settled between them. */
export class ManualTimers implements Timers {
  time = 0
  readonly #scheduled = new Set<Scheduled>()

  now(): number {
    return this.time
  }

  setTimeout(callback: () => void, ms: number): unknown {
    const entry = { at: this.time + ms, callback }
    this.#scheduled.add(entry)
    return entry
  }

  clearTimeout(handle: unknown): void {
    this.#scheduled.delete(handle as Scheduled)
  }

  get pending(): number {
    return this.#scheduled.size
  }

  /** Delays of everything scheduled, from now. */
  delays(): number[] {
    return [...this.#scheduled].map((entry) => entry.at - this.time)
  }

  async advance(ms: number): Promise<void> {
    const until = this.time + ms
    for (;;) {
      await settle()
      let next: Scheduled | undefined
      for (const entry of this.#scheduled) if (entry.at <= until && (next === undefined || entry.at < next.at)) next = entry
      if (next === undefined) break
      this.#scheduled.delete(next)
      this.time = next.at
      next.callback()
    }
    this.time = until
    await settle()
  }
}

/** Lets pending promise chains (a probe awaiting its response) run to completion. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

/** An upstream client answering each URL with the status the test sets; "hang" waits for the abort. */
export class ScriptedClient {
  readonly requests: UpstreamRequest[] = []
  readonly #status = new Map<string, number | 'hang' | 'refuse'>()

  set(url: string, status: number | 'hang' | 'refuse'): void {
    this.#status.set(url, status)
  }

  readonly send: UpstreamClient = (request) => {
    this.requests.push(request)
    const status = this.#status.get(request.url) ?? 200
    if (status === 'refuse') return Promise.reject(new Error('connection refused'))
    if (status === 'hang') {
      return new Promise((_resolve, reject) => request.signal.addEventListener('abort', () => reject(request.signal.reason)))
    }
    return Promise.resolve(new Response(status === 204 || status === 304 ? null : 'ok', { status }))
  }
}

/** A discovery host whose answers the test sets, and whose watcher the test fires. */
export class FakeHost implements DiscoveryHost {
  readonly dns = new Map<string, string[] | Error>()
  readonly files = new Map<string, string>()
  readonly watchers = new Map<string, () => void>()
  resolutions = 0

  async resolveDns(host: string): Promise<string[]> {
    this.resolutions++
    const answer = this.dns.get(host)
    if (answer === undefined) throw new Error(`${host}: not found`)
    if (answer instanceof Error) throw answer
    return answer
  }

  async readTextFile(path: string): Promise<string> {
    const text = this.files.get(path)
    if (text === undefined) throw new Error(`ENOENT: no such file, open '${path}'`)
    return text
  }

  watchFile(path: string, onChange: () => void): () => void {
    this.watchers.set(path, onChange)
    return () => this.watchers.delete(path)
  }

  /** Writes the file and fires its watcher, as a rename into place would. */
  write(path: string, text: string): void {
    this.files.set(path, text)
    this.watchers.get(path)?.()
  }
}

/** Records every event of the given names, in order. */
export function recordEvents<K extends GatewayEventName>(events: EventBus, ...names: K[]): Array<{ name: K; event: GatewayEventMap[K] }> {
  const seen: Array<{ name: K; event: GatewayEventMap[K] }> = []
  for (const name of names) events.on(name, (event) => seen.push({ name, event }))
  return seen
}

export interface TestUpstream {
  upstream: UpstreamRuntime
  events: EventBus
  timers: ManualTimers
  client: ScriptedClient
  host: FakeHost
}

export function testUpstream(config: Partial<UpstreamConfig> & { endpoints?: UpstreamConfig['endpoints'] }, deps: Partial<UpstreamDeps> = {}): TestUpstream {
  const events = new EventBus()
  const timers = new ManualTimers()
  const client = new ScriptedClient()
  const host = new FakeHost()
  const full: UpstreamConfig = { name: 'payments', endpoints: [], balance: 'round_robin', connectTimeoutMs: 1000, retryConnectFailure: false, ...config }
  const upstream = createUpstream(full, { events, send: client.send, host, timers, random: () => 0.5, ...deps })
  return { upstream, events, timers, client, host }
}

export function endpoints(...urls: string[]): UpstreamConfig['endpoints'] {
  return urls.map((url) => ({ url, weight: 1 }))
}

/** URLs of n picks in a row. */
export function picks(upstream: UpstreamRuntime, n: number): string[] {
  const urls: string[] = []
  for (let i = 0; i < n; i++) urls.push(upstream.pick()!.url)
  return urls
}

/** The endpoint object currently serving this URL (picked until found). */
export function endpointFor(upstream: UpstreamRuntime, url: string): Endpoint {
  for (let i = 0; i < 100; i++) {
    const endpoint = upstream.pick()
    if (endpoint?.url === url) return endpoint
  }
  throw new Error(`${url} is never picked`)
}
