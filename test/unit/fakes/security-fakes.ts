import { EventBus, type GatewayEventMap, type GatewayEventName } from '../../../src/core/events.ts'
import { PolicyStates } from '../../../src/core/policy-states.ts'
import type { GatewayDeps, PolicyHost, RouteContext } from '../../../src/policies/policy.ts'
import { Exchange, type Step } from '../../../src/proxy/exchange.ts'

/** A route context with nothing behind it: enough for the security layers, which only read route, events and gateway. */
export function fakeContext(name = 'r', gateway: GatewayDeps = fakeGateway()): RouteContext {
  return {
    route: { name, timeoutMs: 0 },
    upstream: undefined as never,
    upstreams: new Map(),
    events: new EventBus(),
    forwardTo: () => () => Promise.reject(new Error('no upstream in unit tests')),
    keep: (_kind, _policy, create) => create(),
    now: () => 0,
    random: () => 0.5,
    gateway,
  }
}

/** Every event of one kind, in order. */
export function record<K extends GatewayEventName>(events: EventBus, name: K): Array<GatewayEventMap[K]> {
  const seen: Array<GatewayEventMap[K]> = []
  events.on(name, (event) => seen.push(event))
  return seen
}

export function exchangeFor(url: string, init: RequestInit & { remoteAddress?: string } = {}): Exchange {
  const request = new Request(url, { ...init, ...(init.body instanceof ReadableStream ? { duplex: 'half' } : {}) } as RequestInit)
  const parsed = new URL(url)
  return new Exchange(request, { remoteAddress: init.remoteAddress ?? '127.0.0.1' }, 'req-1', parsed.pathname, parsed.search, 0)
}

/** The innermost step for unit tests: records the exchange, reads its body, answers 200 with what it saw. */
export function echoStep(): Step & { calls: Exchange[] } {
  const calls: Exchange[] = []
  const step = async (exchange: Exchange) => {
    calls.push(exchange)
    const body = exchange.body
    let bytes = 0
    if (body instanceof ReadableStream) {
      const reader = body.getReader()
      for (;;) {
        const { done, value } = await reader.read()
        if (done) break
        bytes += value.byteLength
      }
    }
    return new Response(JSON.stringify({ bytes, edits: exchange.upstreamHeaderEdits ?? [] }), { headers: { 'content-type': 'application/json' } })
  }
  return Object.assign(step, { calls })
}

/** Files in memory, with watchers the test fires itself. */
export class MemoryHost implements PolicyHost {
  files = new Map<string, string>()
  env_ = new Map<string, string>()
  watchers = new Map<string, () => void>()

  readTextFile(path: string): Promise<string> {
    const text = this.files.get(path)
    return text === undefined ? Promise.reject(new Error(`ENOENT: ${path}`)) : Promise.resolve(text)
  }

  watchFile(path: string, onChange: () => void): () => void {
    this.watchers.set(path, onChange)
    return () => this.watchers.delete(path)
  }

  resolveDns(): Promise<string[]> {
    return Promise.reject(new Error('no DNS in unit tests'))
  }

  env(name: string): string | undefined {
    return this.env_.get(name)
  }
}

/** What the gateway shares with every route's policies, in memory: files and environment from `host`, one instance per key. */
export function fakeGateway(host: PolicyHost = new MemoryHost(), extra: Partial<GatewayDeps> = {}): GatewayDeps {
  const kept = new Map<string, unknown>()
  return {
    host,
    keep: <T>(key: string, _config: unknown, create: () => T): T => {
      if (!kept.has(key)) kept.set(key, create())
      return kept.get(key) as T
    },
    states: new PolicyStates(),
    ...extra,
  }
}
