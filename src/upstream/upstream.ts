import type { EventBus } from '../core/events.ts'
import type { DiscoveryHost, UpstreamClient } from '../core/host.ts'
import { createBalancer, type Balancer, type Endpoint } from './balancer.ts'
import { describeDiscovery, startDiscovery } from './discovery.ts'
import { HealthChecker, recordProbe } from './health-check.ts'
import { OutlierDetector } from './outlier.ts'
import { systemTimers, type Timers } from '../core/timers.ts'
import { UpstreamEndpoint } from './endpoint.ts'
import type { EndpointConfig, UpstreamConfig } from './config.ts'

export interface EndpointSnapshot {
  url: string
  weight: number
  active: number
  healthy: boolean
  ejected: boolean
  /** When the ejection ends (ISO time); only while ejected. */
  ejectedUntil?: string
  consecutiveFailures: number
  timesEjected: number
}

export interface UpstreamSnapshot {
  name: string
  balance: string
  /** Every endpoint is ejected or unhealthy, so traffic goes to all of them (Envoy's panic mode). */
  panic: boolean
  discovery?: { source: 'dns' | 'file'; target: string; lastError?: string }
  endpoints: EndpointSnapshot[]
}

/** Everything an upstream needs at run time besides its config; built once per config load. */
export interface UpstreamDeps {
  events: EventBus
  send: UpstreamClient
  /** Name resolution and files for discovery. */
  host: DiscoveryHost
  timers?: Timers
  random?: () => number
}

/** An upstream as the proxy sees it: endpoints to pick from, and where to report how they did. */
export interface UpstreamRuntime {
  readonly config: UpstreamConfig
  /** An endpoint for the next try, preferring one not yet tried; undefined when there are none at all. */
  pick(tried?: readonly Endpoint[]): Endpoint | undefined
  /** How a call to the endpoint went: ok is false for connect failures, resets, timeouts and 5xx. */
  report(endpoint: Endpoint, ok: boolean): void
  /** Starts timers (health checks, discovery); stop() ends them. */
  start(): void
  stop(): void
  snapshot(): UpstreamSnapshot
}

/** How many extra draws to spend looking for an endpoint not tried yet (Envoy's host_selection_retry_max_attempts). */
const RESELECT_ATTEMPTS = 3

export function createUpstream(config: UpstreamConfig, deps: UpstreamDeps): UpstreamRuntime {
  return new Upstream(config, deps)
}

/**
 * Endpoints, their health, and a balancer over the ones in service. The balancer is rebuilt only
 * when that set changes (an ejection, a health flip, a discovery update), so pick and report cost
 * no allocation while nothing changes.
 */
class Upstream implements UpstreamRuntime {
  readonly config: UpstreamConfig
  readonly #events: EventBus
  readonly #timers: Timers
  readonly #random: () => number
  readonly #host: DiscoveryHost
  readonly #outlier: OutlierDetector | undefined
  readonly #health: HealthChecker | undefined
  #endpoints: UpstreamEndpoint[] = []
  #balancer: Balancer<UpstreamEndpoint> | undefined
  #panic = false
  #running = false
  #stopDiscovery: (() => void) | undefined
  #discoveryError: string | undefined

  constructor(config: UpstreamConfig, deps: UpstreamDeps) {
    this.config = config
    this.#events = deps.events
    this.#timers = deps.timers ?? systemTimers
    this.#random = deps.random ?? Math.random
    this.#host = deps.host
    if (config.outlier) this.#outlier = new OutlierDetector(config.outlier)
    if (config.healthCheck) {
      const checkDeps = { send: deps.send, timers: this.#timers, random: this.#random, connectTimeoutMs: config.connectTimeoutMs }
      this.#health = new HealthChecker(config.healthCheck, checkDeps, (endpoint, ok) => this.#probed(endpoint, ok))
    }
    this.#setEndpoints(config.endpoints)
  }

  pick(tried?: readonly Endpoint[]): Endpoint | undefined {
    const outlier = this.#outlier
    if (outlier !== undefined && outlier.nextReturnAt !== Infinity && this.#timers.now() >= outlier.nextReturnAt) this.#returnEjected()
    const balancer = this.#balancer
    if (balancer === undefined) return undefined
    let endpoint = balancer.pick()
    if (tried === undefined || tried.length === 0) return endpoint
    for (let i = 0; i < RESELECT_ATTEMPTS && tried.includes(endpoint); i++) endpoint = balancer.pick()
    if (!tried.includes(endpoint)) return endpoint
    // The draws kept landing on tried endpoints (random, or a heavy weight): take any untried one.
    return balancer.endpoints.find((candidate) => !tried.includes(candidate)) ?? endpoint
  }

  report(endpoint: Endpoint, ok: boolean): void {
    const outlier = this.#outlier
    if (outlier === undefined) return
    // pick() hands out only this upstream's own endpoints.
    const own = endpoint as UpstreamEndpoint
    if (ok) {
      if (own.consecutiveFailures !== 0) own.consecutiveFailures = 0
      return
    }
    const durationMs = outlier.failed(own, this.#endpoints.length, this.#timers.now())
    if (durationMs === 0) return
    this.#events.emit('endpoint_ejected', { upstream: this.config.name, endpoint: own.url, times: own.timesEjected, durationMs })
    this.#rebuild()
  }

  start(): void {
    if (this.#running) return
    this.#running = true
    if (this.#health) for (const endpoint of this.#endpoints) this.#health.watch(endpoint)
    const discovery = this.config.discovery
    if (discovery === undefined) return
    const listener = { updated: (list: EndpointConfig[]) => this.#discovered(list), failed: (reason: string) => this.#discoveryFailed(reason) }
    this.#stopDiscovery = startDiscovery(discovery, this.#host, this.#timers, listener)
  }

  stop(): void {
    this.#running = false
    this.#health?.stop()
    this.#stopDiscovery?.()
    this.#stopDiscovery = undefined
  }

  snapshot(): UpstreamSnapshot {
    const now = this.#timers.now()
    if (this.#outlier !== undefined && now >= this.#outlier.nextReturnAt) this.#returnEjected()
    const snapshot: UpstreamSnapshot = {
      name: this.config.name,
      balance: this.config.balance,
      panic: this.#panic,
      endpoints: this.#endpoints.map((e) => {
        const shown: EndpointSnapshot = {
          url: e.url,
          weight: e.weight,
          active: e.active,
          healthy: e.healthy,
          ejected: e.ejectedUntil !== 0,
          consecutiveFailures: e.consecutiveFailures,
          timesEjected: e.timesEjected,
        }
        if (e.ejectedUntil !== 0) shown.ejectedUntil = new Date(Date.now() + (e.ejectedUntil - now)).toISOString()
        return shown
      }),
    }
    if (this.config.discovery) {
      snapshot.discovery = describeDiscovery(this.config.discovery)
      if (this.#discoveryError !== undefined) snapshot.discovery.lastError = this.#discoveryError
    }
    return snapshot
  }

  /** Takes a new list: endpoints whose URL stays keep their object and state; the others go. True if anything changed. */
  #setEndpoints(list: readonly EndpointConfig[]): boolean {
    const now = this.#timers.now()
    const current = this.#endpoints
    const byUrl = new Map(current.map((endpoint) => [endpoint.url, endpoint]))
    let changed = list.length !== current.length
    const next = list.map(({ url, weight }, index) => {
      let endpoint = byUrl.get(url)
      if (endpoint === undefined) {
        endpoint = new UpstreamEndpoint(url, weight, now)
        if (this.#running) this.#health?.watch(endpoint)
      } else {
        byUrl.delete(url)
        if (endpoint.weight !== weight) endpoint.weight = weight
        else if (current[index] === endpoint) return endpoint
      }
      changed = true
      return endpoint
    })
    for (const gone of byUrl.values()) {
      gone.removed = true
      this.#outlier?.forget(gone)
      this.#health?.unwatch(gone)
    }
    if (!changed) return false
    this.#endpoints = next
    this.#rebuild()
    return true
  }

  /** A new balancer over the endpoints in service, or over all of them when none is (panic mode). */
  #rebuild(): void {
    const all = this.#endpoints
    const inService = all.filter((endpoint) => endpoint.inService)
    this.#panic = inService.length === 0 && all.length > 0
    const candidates = this.#panic || inService.length === all.length ? all : inService
    this.#balancer = candidates.length === 0 ? undefined : createBalancer(this.config.balance, candidates, this.#random)
  }

  #returnEjected(): void {
    const returned = this.#outlier!.returnDue(this.#endpoints, this.#timers.now())
    if (returned.length === 0) return
    for (const endpoint of returned) this.#events.emit('endpoint_returned', { upstream: this.config.name, endpoint: endpoint.url })
    this.#rebuild()
  }

  #probed(endpoint: UpstreamEndpoint, ok: boolean): void {
    const changed = recordProbe(endpoint, ok, this.config.healthCheck!)
    this.#events.emit('health_check', { upstream: this.config.name, endpoint: endpoint.url, ok, healthy: endpoint.healthy, changed })
    if (changed) this.#rebuild()
  }

  #discovered(list: EndpointConfig[]): void {
    const recovered = this.#discoveryError !== undefined
    this.#discoveryError = undefined
    if (this.#setEndpoints(list) || recovered) this.#events.emit('discovery_updated', { upstream: this.config.name, endpoints: list.length })
  }

  /** Keeps the last good list. Announced once per distinct reason, so a lasting failure is not a log line every refresh. */
  #discoveryFailed(reason: string): void {
    if (reason === this.#discoveryError) return
    this.#discoveryError = reason
    this.#events.emit('discovery_failed', { upstream: this.config.name, error: reason })
  }
}

declare module '../core/events.ts' {
  interface GatewayEventMap {
    endpoint_ejected: { upstream: string; endpoint: string; times: number; durationMs: number }
    endpoint_returned: { upstream: string; endpoint: string }
    health_check: { upstream: string; endpoint: string; ok: boolean; healthy: boolean; changed: boolean }
    discovery_updated: { upstream: string; endpoints: number }
    discovery_failed: { upstream: string; error: string }
  }
}
