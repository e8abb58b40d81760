import type { EventBus } from '../../core/events.ts'
import { CountWindow, TimeWindow, type OutcomeWindow } from './window.ts'
import type { BreakerSnapshot, BreakerState, CircuitBreakerPolicy } from './types.ts'

/**
 * How a call ended, as far as the breaker cares. "ignored": the client left, or the gateway itself
 * failed; either says nothing about the upstream.
 */
export type Outcome = 'success' | 'failure' | 'ignored'

/** admit() answers this instead of a permit when the call must not go through. */
export const REJECTED = -1

export interface BreakerIdentity {
  route: string
  upstream: string
  events: EventBus
}

/**
 * resilience4j's state machine for one route and upstream. Closed: every call is recorded in the
 * window, and a failure or slow-call rate over its threshold (once min_requests calls are in) opens
 * it. Open: calls are rejected until open_for has passed. Half-open: exactly half_open_requests
 * probes go through at a time; one failing reopens, all succeeding closes with an empty window.
 *
 * Each state change starts a new epoch. A call's permit is the epoch it was admitted in, so an
 * outcome that arrives after the state moved on (a slow call from before the breaker opened, a probe
 * from an earlier half-open period) is dropped instead of being counted against the wrong state.
 */
export class CircuitBreaker {
  state: BreakerState = 'closed'
  readonly #policy: CircuitBreakerPolicy
  readonly #identity: BreakerIdentity
  readonly #window: OutcomeWindow
  readonly #rejectEvent: { route: string; upstream: string }
  #epoch = 0
  #openUntil = 0
  /** Half-open: probe slots taken, and probes that came back good. */
  #probes = 0
  #goodProbes = 0

  constructor(policy: CircuitBreakerPolicy, identity: BreakerIdentity) {
    this.#policy = policy
    this.#identity = identity
    this.#window = policy.windowRequests !== undefined ? new CountWindow(policy.windowRequests) : new TimeWindow(policy.windowMs!)
    this.#rejectEvent = { route: identity.route, upstream: identity.upstream }
  }

  /** A permit (the current epoch) for a call that may go ahead, or REJECTED. */
  admit(now: number): number {
    this.#refresh(now)
    if (this.state === 'closed') return this.#epoch
    if (this.state === 'half_open' && this.#probes < this.#policy.halfOpenRequests) {
      this.#probes++
      return this.#epoch
    }
    this.#identity.events.emit('breaker_reject', this.#rejectEvent)
    return REJECTED
  }

  /** Milliseconds until an open breaker lets probes through; 0 when not open. */
  retryInMs(now: number): number {
    return this.state === 'open' ? Math.max(0, this.#openUntil - now) : 0
  }

  /** Reports how an admitted call went; `slow` when it took at least slow_call.duration (never without slow_call). */
  settle(permit: number, now: number, outcome: Outcome, slow: boolean): void {
    if (permit !== this.#epoch) return
    if (this.state === 'closed') {
      if (outcome === 'ignored') return
      const window = this.#window
      window.record(now, outcome === 'failure', slow)
      if (this.#trips(window)) this.#open(now)
    } else if (this.state === 'half_open') {
      if (outcome === 'ignored') {
        this.#probes-- // a cancelled probe proved nothing: let another request take its slot
      } else if (outcome === 'failure' || slow) {
        this.#open(now)
      } else if (++this.#goodProbes >= this.#policy.halfOpenRequests) {
        this.#moveTo('closed') // the window was emptied on the way into half-open: probes are not recorded in it
      }
    }
  }

  snapshot(now: number): BreakerSnapshot {
    this.#refresh(now)
    const window = this.#window
    window.advance(now)
    return {
      route: this.#identity.route,
      upstream: this.#identity.upstream,
      state: this.state,
      calls: window.calls,
      failures: window.failures,
      slowCalls: window.slowCalls,
      retryInMs: Math.ceil(this.retryInMs(now)),
    }
  }

  #trips(window: OutcomeWindow): boolean {
    const { minRequests, failureRate, slowCall } = this.#policy
    const calls = window.calls
    if (calls < minRequests) return false
    if (window.failures / calls >= failureRate) return true
    return slowCall !== undefined && window.slowCalls / calls >= slowCall.rate
  }

  /** Open turns half-open lazily, when someone next asks: no timer to keep or cancel. */
  #refresh(now: number): void {
    if (this.state === 'open' && now >= this.#openUntil) {
      this.#probes = 0
      this.#goodProbes = 0
      this.#window.clear()
      this.#moveTo('half_open')
    }
  }

  #open(now: number): void {
    this.#openUntil = now + this.#policy.openForMs
    this.#moveTo('open')
  }

  #moveTo(to: BreakerState): void {
    const from = this.state
    this.state = to
    this.#epoch++
    this.#identity.events.emit('breaker_transition', { route: this.#identity.route, upstream: this.#identity.upstream, from, to })
  }
}
