import type { UpstreamClient } from '../core/host.ts'
import { discardBody } from '../core/body.ts'
import type { Timers } from '../core/timers.ts'
import type { UpstreamEndpoint } from './endpoint.ts'
import type { HealthCheckPolicy } from './config.ts'

/** A probe's answer up to this size is read whole (most are a few bytes); a larger one is cut, not read. */
const PROBE_BODY_BYTES = 64 * 1024

export interface HealthCheckDeps {
  send: UpstreamClient
  timers: Timers
  random(): number
  connectTimeoutMs: number
}

/** One endpoint's probe loop: the next probe's timer, or the probe in flight and its timeout. */
interface ProbeLoop {
  timer: unknown
  inFlight: AbortController | undefined
}

/** Each probe is spread ±10% around the interval, so endpoints probed together drift apart (Envoy's interval_jitter). */
const JITTER = 0.1

/**
 * Active health: GET endpoint.url + path every interval, off the request path. 2xx within the
 * timeout passes; anything else fails. A threshold of results in a row flips the endpoint's health.
 */
export class HealthChecker {
  readonly policy: HealthCheckPolicy
  readonly #deps: HealthCheckDeps
  readonly #onResult: (endpoint: UpstreamEndpoint, ok: boolean) => void
  readonly #loops = new Map<UpstreamEndpoint, ProbeLoop>()

  constructor(policy: HealthCheckPolicy, deps: HealthCheckDeps, onResult: (endpoint: UpstreamEndpoint, ok: boolean) => void) {
    this.policy = policy
    this.#deps = deps
    this.#onResult = onResult
  }

  /** Starts probing; the first probe comes at a random point of the first interval, so a fleet starting together spreads out. */
  watch(endpoint: UpstreamEndpoint): void {
    if (this.#loops.has(endpoint)) return
    const loop: ProbeLoop = { timer: undefined, inFlight: undefined }
    this.#loops.set(endpoint, loop)
    this.#schedule(endpoint, loop, this.#deps.random() * this.policy.intervalMs)
  }

  unwatch(endpoint: UpstreamEndpoint): void {
    const loop = this.#loops.get(endpoint)
    if (loop === undefined) return
    this.#loops.delete(endpoint)
    this.#deps.timers.clearTimeout(loop.timer)
    loop.inFlight?.abort()
  }

  /** Clears every timer and aborts probes in flight, so nothing keeps the process alive. */
  stop(): void {
    for (const endpoint of [...this.#loops.keys()]) this.unwatch(endpoint)
  }

  #schedule(endpoint: UpstreamEndpoint, loop: ProbeLoop, delayMs: number): void {
    loop.timer = this.#deps.timers.setTimeout(() => void this.#probe(endpoint, loop), delayMs)
  }

  async #probe(endpoint: UpstreamEndpoint, loop: ProbeLoop): Promise<void> {
    const { timers, random } = this.#deps
    const controller = new AbortController()
    loop.inFlight = controller
    // The loop's one timer is the probe's timeout while it runs, so unwatch clears either.
    loop.timer = timers.setTimeout(() => controller.abort(), this.policy.timeoutMs)
    const ok = await this.#passes(endpoint, controller.signal)
    timers.clearTimeout(loop.timer)
    loop.inFlight = undefined
    if (this.#loops.get(endpoint) !== loop) return // unwatched meanwhile
    this.#onResult(endpoint, ok)
    this.#schedule(endpoint, loop, this.policy.intervalMs * (1 - JITTER + 2 * JITTER * random()))
  }

  async #passes(endpoint: UpstreamEndpoint, signal: AbortSignal): Promise<boolean> {
    try {
      const response = await this.#deps.send({
        url: endpoint.url + this.policy.path,
        method: 'GET',
        headers: new Headers({ 'user-agent': 'pillion-health-check' }),
        body: null,
        signal,
        connectTimeoutMs: Math.min(this.#deps.connectTimeoutMs, this.policy.timeoutMs),
        bufferUpTo: PROBE_BODY_BYTES,
      })
      // Read a small body within the timeout so the connection can be reused; a large one is cut.
      await discardBody(response.body, 0)
      return response.status >= 200 && response.status < 300
    } catch {
      return false
    }
  }
}

/**
 * Applies one probe result; true when it flipped the endpoint's health. Results that agree with the
 * current state reset the streak: thresholds count results in a row, as Envoy's do.
 */
export function recordProbe(endpoint: UpstreamEndpoint, ok: boolean, policy: HealthCheckPolicy): boolean {
  if (ok === endpoint.healthy) {
    endpoint.probeStreak = 0
    return false
  }
  endpoint.probeStreak++
  if (endpoint.probeStreak < (ok ? policy.healthyThreshold : policy.unhealthyThreshold)) return false
  endpoint.healthy = ok
  endpoint.probeStreak = 0
  return true
}
