import type { EventBus } from '../../core/events.ts'
import type { RateLimitAlgorithm, RedisSettings } from './config.ts'

/** One counting decision made by a shared store, atomically on its side. */
export interface StoreDecision {
  allowed: boolean
  /** Requests left for the key. */
  remaining: number
  /** Milliseconds until the key is back to its full allowance. */
  resetMs: number
  /** When refused: milliseconds until one request would be admitted. */
  retryMs: number
}

/**
 * A store shared by every replica (Redis). Implemented under src/runtime/ (runtime/redis.ts, on
 * ioredis), so the core never imports a client. take() counts one request against the key in one
 * atomic step on the store's side and rejects on any failure.
 */
export interface RateLimitStore {
  take(key: string, algorithm: RateLimitAlgorithm): Promise<StoreDecision>
  /** Drops the connection at once; later calls fail. */
  close(): Promise<void>
}

/** Opens a store; `onError` hears failures that happen outside any call (a dropped connection). */
export type OpenRateLimitStore = (settings: RedisSettings, onError: (error: unknown) => void) => RateLimitStore

/** redis_error is emitted for the first failure and then at most this often, with a count. */
export const STORE_ERROR_REPORT_MS = 10_000

/**
 * The gateway's one shared store, as rate limits use it: every call answers within timeoutMs (its own
 * timer, besides the client's command timeout), failures become `undefined` for the caller to treat
 * by on_error, and trouble is reported as throttled redis_error events and one redis_recovered.
 */
export class GlobalLimitStore {
  readonly onError: 'allow' | 'deny'
  readonly #store: RateLimitStore
  readonly #service: string
  readonly #timeoutMs: number
  readonly #timeoutMessage: string
  readonly #events: EventBus
  readonly #now: () => number
  /** Failures since the last redis_error. */
  #unreported = 0
  /** A redis_error went out and no redis_recovered since: the next success says so. */
  #reported = false
  #reportedAt = Number.NEGATIVE_INFINITY

  constructor(open: OpenRateLimitStore, settings: RedisSettings, service: string, events: EventBus, now = () => performance.now()) {
    this.onError = settings.onError
    this.#timeoutMs = settings.timeoutMs
    this.#timeoutMessage = `no answer within ${settings.timeoutMs}ms`
    this.#service = service.replace(/[{}]/g, '_')
    this.#events = events
    this.#now = now
    this.#store = open(settings, (error) => this.#failed(error))
  }

  /**
   * Where a limit's keys live: pillion:{service:route:limit}:<key>. The braces are a Redis Cluster
   * hash tag, so one limit's keys share a slot; services sharing one Redis never meet.
   */
  keyPrefix(route: string, limit: string): string {
    return `pillion:{${this.#service}:${route}:${limit}}:`
  }

  take(key: string, algorithm: RateLimitAlgorithm): Promise<StoreDecision | undefined> {
    return new Promise((resolve) => {
      let settled = false
      const timer = setTimeout(() => {
        if (settled) return
        settled = true
        this.#failed(new Error(this.#timeoutMessage))
        resolve(undefined)
      }, this.#timeoutMs)
      this.#store.take(key, algorithm).then(
        (decision) => {
          if (settled) return
          settled = true
          clearTimeout(timer)
          if (this.#reported) this.#recovered()
          resolve(decision)
        },
        (error: unknown) => {
          if (settled) return
          settled = true
          clearTimeout(timer)
          this.#failed(error)
          resolve(undefined)
        },
      )
    })
  }

  close(): Promise<void> {
    return this.#store.close()
  }

  #failed(error: unknown): void {
    this.#unreported++
    const now = this.#now()
    if (now - this.#reportedAt < STORE_ERROR_REPORT_MS) return
    this.#reportedAt = now
    this.#reported = true
    const failures = this.#unreported
    this.#unreported = 0
    this.#events.emit('redis_error', { error: describeError(error), failures, onError: this.onError })
  }

  /** Said once per reported outage; a flapping Redis therefore logs at most two lines per interval. */
  #recovered(): void {
    this.#reported = false
    this.#events.emit('redis_recovered', { failures: this.#unreported })
    this.#unreported = 0
  }
}

function describeError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error)
  return message === '' ? String(error) : message
}

declare module '../../core/host.ts' {
  interface Runtime {
    /** The shared rate-limit store on Redis ([redis]); ioredis on every runtime, loaded on first use. */
    redisStore: OpenRateLimitStore
  }
}
