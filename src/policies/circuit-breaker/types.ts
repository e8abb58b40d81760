import type { FailureCondition } from '../shared/conditions.ts'

export interface CircuitBreakerPolicy {
  /** Exactly one of windowMs (sliding time window) and windowRequests (last N calls) is set. */
  windowMs?: number
  windowRequests?: number
  minRequests: number
  failureRate: number
  slowCall?: { durationMs: number; rate: number }
  openForMs: number
  halfOpenRequests: number
  failures: FailureCondition[]
}

export type BreakerState = 'closed' | 'open' | 'half_open'

/** A circuit breaker as the admin API (GET /breakers), metrics and the dashboard show it. */
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

declare module '../../core/events.ts' {
  interface GatewayEventMap {
    breaker_transition: { route: string; upstream: string; from: BreakerState; to: BreakerState }
    breaker_reject: { route: string; upstream: string }
  }
}

declare module '../../core/policy-states.ts' {
  interface PolicyStateMap {
    /** Keyed "route/upstream". */
    circuit_breaker: BreakerSnapshot
  }
}
