import type { ServeOptions } from '../core/host.ts'

/** Bun's idle timeout counts a request still waiting on its upstream; it tops out at 255 s (0 = off). */
export function idleTimeoutSeconds(requestTimeoutMs: number): number {
  const seconds = Math.ceil(requestTimeoutMs / 1000) + 5
  return requestTimeoutMs === 0 || seconds > 255 ? 0 : Math.max(seconds, 10)
}

/** uWebSockets, under Bun.serve, cuts a connection whose first request head is not in after 10 s, whatever idleTimeout says. */
export const BUN_FIRST_HEAD_SECONDS = 10

export interface BunTimers {
  /** Bun.serve's idleTimeout, in seconds. */
  idleTimeout: number
  /** Given to each request with server.timeout, when a request may wait longer than idleTimeout. */
  perRequest?: number
}

/** Bun's largest idle timeout; also what a request on a route without a timeout gets where a deadline is required (Envoy's stream_idle_timeout is 300 s). */
export const BUN_MAX_IDLE_SECONDS = 255

/**
 * How Bun.serve alone keeps a listener's header deadline. Its idle timer is not restarted by a
 * head's bytes (measured on Bun 1.4.5, docs/runtimes.md), so idleTimeout is the deadline for each
 * head after a connection's first, which has uWebSockets' fixed 10 s. The same timer also bounds a
 * request still waiting on its upstream: a request that may wait longer raises its connection's
 * timer with server.timeout, which then holds for that connection's next head too (still bounded:
 * where the listener requires a deadline, a route without a timeout gets Bun's largest, 255 s, not
 * none). undefined: Bun alone cannot hold a deadline the listener requires (shorter than 10 s or
 * longer than 255 s), so a front must (connection-front.ts).
 */
export function bunTimers(options: ServeOptions): BunTimers | undefined {
  const inFlight = idleTimeoutSeconds(options.requestTimeoutMs)
  const deadlineMs = options.headersTimeoutMs ?? 0
  if (deadlineMs === 0) return { idleTimeout: inFlight }
  const deadline = Math.ceil(deadlineMs / 1000)
  const required = options.headersTimeoutRequired === true
  if (deadline < BUN_FIRST_HEAD_SECONDS || deadline > BUN_MAX_IDLE_SECONDS) return required ? undefined : { idleTimeout: inFlight }
  if (inFlight === 0) return required ? { idleTimeout: deadline, perRequest: BUN_MAX_IDLE_SECONDS } : { idleTimeout: 0 }
  return inFlight > deadline ? { idleTimeout: deadline, perRequest: inFlight } : { idleTimeout: deadline }
}
