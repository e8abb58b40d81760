import type { UpstreamEndpoint } from './endpoint.ts'
import type { OutlierPolicy } from './config.ts'

/**
 * Passive health, Envoy's consecutive-5xx outlier detection: an endpoint whose last N calls failed
 * is ejected for base × times ejected (capped), while at most max_ejected_percent of the endpoints
 * (but always at least one) are out. Ejections end lazily: the upstream calls returnDue when the
 * clock passes nextReturnAt, so no timer is needed and nothing runs while nothing is ejected.
 */
export class OutlierDetector {
  #ejected = 0
  /** Earliest end of a current ejection; Infinity when none is ejected. */
  nextReturnAt = Infinity

  readonly policy: OutlierPolicy

  constructor(policy: OutlierPolicy) {
    this.policy = policy
  }

  get ejectedCount(): number {
    return this.#ejected
  }

  /** Counts a failed call; returns the ejection time in ms when this failure ejected the endpoint, else 0. */
  failed(endpoint: UpstreamEndpoint, endpointCount: number, now: number): number {
    // Calls that were in flight when it was ejected say nothing new.
    if (endpoint.ejectedUntil !== 0 || endpoint.removed) return 0
    if (++endpoint.consecutiveFailures < this.policy.consecutiveFailures) return 0
    if (this.#ejected >= maxEjected(endpointCount, this.policy.maxEjectedPercent)) return 0
    const { baseEjectionMs, maxEjectionMs } = this.policy
    // Time back in service forgives past ejections, as Envoy's multiplier decays while a host behaves.
    const forgiven = Math.floor((now - endpoint.inServiceSince) / baseEjectionMs)
    endpoint.timesEjected = Math.max(0, endpoint.timesEjected - forgiven) + 1
    const durationMs = Math.min(baseEjectionMs * endpoint.timesEjected, maxEjectionMs)
    endpoint.ejectedUntil = now + durationMs
    endpoint.consecutiveFailures = 0
    this.#ejected++
    if (endpoint.ejectedUntil < this.nextReturnAt) this.nextReturnAt = endpoint.ejectedUntil
    return durationMs
  }

  /** Ends the ejections that are due and returns those endpoints. */
  returnDue(endpoints: readonly UpstreamEndpoint[], now: number): UpstreamEndpoint[] {
    const returned: UpstreamEndpoint[] = []
    let next = Infinity
    for (const endpoint of endpoints) {
      if (endpoint.ejectedUntil === 0) continue
      if (endpoint.ejectedUntil <= now) {
        endpoint.ejectedUntil = 0
        endpoint.inServiceSince = now
        this.#ejected--
        returned.push(endpoint)
      } else if (endpoint.ejectedUntil < next) next = endpoint.ejectedUntil
    }
    this.nextReturnAt = next
    return returned
  }

  /** An endpoint discovery dropped no longer counts against the cap. */
  forget(endpoint: UpstreamEndpoint): void {
    if (endpoint.ejectedUntil === 0) return
    endpoint.ejectedUntil = 0
    this.#ejected--
  }
}

/** At most percent of the endpoints, rounded down, but never less than one: a lone bad endpoint can always go. */
export function maxEjected(endpointCount: number, percent: number): number {
  return Math.max(1, Math.floor((endpointCount * percent) / 100))
}
