import type { Endpoint } from './balancer.ts'

/**
 * An endpoint with the state its upstream keeps about it. The object lives as long as its URL stays
 * in the upstream's list, so a discovery update keeps its ejection, health and in-flight count.
 */
export class UpstreamEndpoint implements Endpoint {
  readonly url: string
  /** Discovery may change it; the upstream then rebuilds its balancer. */
  weight: number
  active = 0
  /** Outlier detection: failed calls since the last good one. */
  consecutiveFailures = 0
  /** Ejections so far, less one for each base ejection time spent back in service. */
  timesEjected = 0
  /** Clock time the current ejection ends; 0 while not ejected. */
  ejectedUntil = 0
  /** Clock time it joined or last came back from an ejection. */
  inServiceSince: number
  /** Active health checks; endpoints start healthy (README: why, unlike Envoy). */
  healthy = true
  /** Probe results in a row that disagree with `healthy`; a threshold of them flips it. */
  probeStreak = 0
  /** Dropped by discovery; requests already holding it finish normally. */
  removed = false

  constructor(url: string, weight: number, now: number) {
    this.url = url
    this.weight = weight
    this.inServiceSince = now
  }

  get inService(): boolean {
    return this.ejectedUntil === 0 && this.healthy
  }
}
