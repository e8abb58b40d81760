import type { RouteConfig } from '../config/types.ts'
import type { BreakerState, EventBus } from '../core/events.ts'
import type { Step } from '../proxy/exchange.ts'
import type { BulkheadSnapshot } from './bulkhead/index.ts'
import type { UpstreamRuntime } from '../upstream/upstream.ts'

/** A circuit breaker as the admin API shows it. */
export interface BreakerSnapshot {
  route: string
  upstream: string
  state: BreakerState
  /** Calls and failures in the current window. */
  calls: number
  failures: number
  slowCalls: number
  /** Milliseconds until an open breaker lets probes through; 0 otherwise. */
  retryInMs: number
}

/** What a policy's layer factory may use besides its own config; built once per config load. */
export interface RouteContext {
  route: RouteConfig
  upstream: UpstreamRuntime
  upstreams: ReadonlyMap<string, UpstreamRuntime>
  events: EventBus
  /** Where breakers register so GET /breakers can list them. */
  breakers: Map<string, () => BreakerSnapshot>
  /** Where bulkheads are listed, by route, for metrics and the dashboard (the pipeline registers each route's). */
  bulkheads?: Map<string, () => BulkheadSnapshot>
  /** Builds the one-try forwarding step to any upstream (for fallback = { upstream = ... }). */
  forwardTo(upstream: UpstreamRuntime): Step
  /**
   * State that should survive a config reload while the policy is unchanged (breaker windows,
   * buckets, budgets): made by create() the first time, handed back on later builds whose policy
   * config is equal. Keyed by kind and route.
   */
  keep<T>(kind: string, policy: unknown, create: () => T): T
  now(): number
  random(): number
}
