import type { UpstreamConfig } from '../config/types.ts'
import type { EventBus } from '../events.ts'
import type { UpstreamClient } from '../runtime/types.ts'
import { createBalancer, type Balancer, type Endpoint } from './balancer.ts'

export interface EndpointSnapshot {
  url: string
  weight: number
  active: number
  healthy: boolean
  ejected: boolean
}

export interface UpstreamSnapshot {
  name: string
  balance: string
  endpoints: EndpointSnapshot[]
}

/** Everything an upstream needs at run time besides its config; built once per config load. */
export interface UpstreamDeps {
  events: EventBus
  send: UpstreamClient
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

export function createUpstream(config: UpstreamConfig, _deps: UpstreamDeps): UpstreamRuntime {
  const balancer: Balancer = createBalancer(config.balance, config.endpoints)
  return {
    config,
    pick(tried) {
      if (balancer.endpoints.length === 0) return undefined
      let endpoint = balancer.pick()
      if (tried === undefined || tried.length === 0) return endpoint
      for (let i = 0; i < RESELECT_ATTEMPTS && tried.includes(endpoint); i++) endpoint = balancer.pick()
      return endpoint
    },
    report() {},
    start() {},
    stop() {},
    snapshot() {
      return {
        name: config.name,
        balance: config.balance,
        endpoints: balancer.endpoints.map((e) => ({ url: e.url, weight: e.weight, active: e.active, healthy: true, ejected: false })),
      }
    },
  }
}
