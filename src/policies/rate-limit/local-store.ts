import type { RateLimitAlgorithm } from './config.ts'

/**
 * One rate limit's counters in this process, one entry per key, refilled lazily (no timer per key).
 *
 * Memory is bounded two ways. An entry that has gone back to its starting state (a full bucket, a
 * window that has passed) is the same as no entry, so it can go at no cost: the map is kept in
 * least-recently-used order and idle entries are swept from its old end whenever a new key arrives,
 * and at most once a second otherwise. And the map never holds more than maxKeys: a new key beyond
 * that pushes out the least recently used one, which then starts afresh if it comes back.
 *
 * take() is synchronous, so concurrent requests in one process are counted exactly. It leaves the
 * numbers for the response headers in remaining, resetMs and retryMs until the next call.
 */
export interface LocalLimiter {
  take(key: string): boolean
  /** Gives back what the last admitted take(key) used, when another limit then refused the request. */
  refund(key: string): void
  /** What is left for the key after the last take(), in requests. */
  remaining: number
  /** Milliseconds until the key is back to its full allowance. */
  resetMs: number
  /** After a refused take(): milliseconds until one request would be admitted. */
  retryMs: number
  readonly size: number
}

/** How often an idle map is swept when no new key arrives to trigger it. */
const SWEEP_EVERY_MS = 1000

export function localLimiter(algorithm: RateLimitAlgorithm, maxKeys: number, clock: () => number): LocalLimiter {
  return algorithm.kind === 'token_bucket'
    ? new TokenBuckets(algorithm.ratePerSecond, algorithm.burst, maxKeys, clock)
    : new FixedWindows(algorithm.limit, algorithm.windowMs, maxKeys, clock)
}

/** A key's entry, linked in least-recently-used order. */
interface Node {
  key: string
  older: Node | undefined
  newer: Node | undefined
}

/**
 * What both kinds share: a map from key to entry, and a list of the entries from least to most
 * recently used (our own list: walking a Map from its start is slow once many keys were deleted,
 * since deleted slots stay in place until it rehashes).
 */
abstract class KeyedCounters<Entry extends Node> implements LocalLimiter {
  remaining = 0
  resetMs = 0
  retryMs = 0
  protected readonly entries = new Map<string, Entry>()
  /** Least and most recently used. */
  #oldest: Entry | undefined
  #newest: Entry | undefined
  readonly #maxKeys: number
  protected readonly clock: () => number
  #sweptAt = Number.NEGATIVE_INFINITY

  constructor(maxKeys: number, clock: () => number) {
    this.#maxKeys = maxKeys
    this.clock = clock
  }

  get size(): number {
    return this.entries.size
  }

  abstract take(key: string): boolean
  abstract refund(key: string): void
  /** True when the entry is back to its starting state, so dropping it changes nothing. */
  protected abstract idle(entry: Entry, now: number): boolean

  /** The key's entry, now the most recently used; undefined when it has none. */
  protected touch(key: string, now: number): Entry | undefined {
    if (now - this.#sweptAt >= SWEEP_EVERY_MS) this.#sweep(now)
    const entry = this.entries.get(key)
    if (entry !== undefined && entry !== this.#newest) {
      this.#unlink(entry)
      this.#append(entry)
    }
    return entry
  }

  /** Adds a new key's entry, making room first. */
  protected insert(entry: Entry, now: number): void {
    this.#sweep(now)
    if (this.entries.size >= this.#maxKeys && this.#oldest !== undefined) this.#drop(this.#oldest)
    this.entries.set(entry.key, entry)
    this.#append(entry)
  }

  /**
   * Drops idle entries from the least recently used end. The list is in order of last use, so the
   * first entry still in use ends the sweep; each entry is dropped once, so this is O(1) amortized.
   */
  #sweep(now: number): void {
    this.#sweptAt = now
    while (this.#oldest !== undefined && this.idle(this.#oldest, now)) this.#drop(this.#oldest)
  }

  #drop(entry: Entry): void {
    this.#unlink(entry)
    this.entries.delete(entry.key)
  }

  #append(entry: Entry): void {
    entry.older = this.#newest
    entry.newer = undefined
    if (this.#newest === undefined) this.#oldest = entry
    else this.#newest.newer = entry
    this.#newest = entry
  }

  #unlink(entry: Entry): void {
    if (entry.older === undefined) this.#oldest = entry.newer as Entry | undefined
    else entry.older.newer = entry.newer
    if (entry.newer === undefined) this.#newest = entry.older as Entry | undefined
    else entry.newer.older = entry.older
    entry.older = entry.newer = undefined
  }
}

interface Bucket extends Node {
  tokens: number
  /** When tokens was last brought up to date. */
  at: number
}

/** Token buckets: burst tokens to start with, ratePerSecond back, one per request. */
class TokenBuckets extends KeyedCounters<Bucket> {
  readonly #perMs: number
  readonly #burst: number

  constructor(ratePerSecond: number, burst: number, maxKeys: number, clock: () => number) {
    super(maxKeys, clock)
    this.#perMs = ratePerSecond / 1000
    this.#burst = burst
  }

  take(key: string): boolean {
    const now = this.clock()
    let bucket = this.touch(key, now)
    if (bucket === undefined) {
      bucket = { key, older: undefined, newer: undefined, tokens: this.#burst, at: now }
      this.insert(bucket, now)
    } else if (now > bucket.at) {
      bucket.tokens = Math.min(this.#burst, bucket.tokens + (now - bucket.at) * this.#perMs)
      bucket.at = now
    }
    const allowed = bucket.tokens >= 1
    if (allowed) bucket.tokens -= 1
    this.remaining = Math.floor(bucket.tokens)
    this.resetMs = (this.#burst - bucket.tokens) / this.#perMs
    this.retryMs = allowed ? 0 : (1 - bucket.tokens) / this.#perMs
    return allowed
  }

  refund(key: string): void {
    const bucket = this.entries.get(key)
    if (bucket !== undefined) bucket.tokens = Math.min(this.#burst, bucket.tokens + 1)
  }

  protected idle(bucket: Bucket, now: number): boolean {
    return bucket.tokens + (now - bucket.at) * this.#perMs >= this.#burst
  }
}

interface Window extends Node {
  /** Which window: floor(epoch ms / windowMs), so windows line up with the clock (a day starts at 00:00 UTC). */
  index: number
  count: number
}

/** Fixed windows: limit requests per window, counted from zero when the next window starts. */
class FixedWindows extends KeyedCounters<Window> {
  readonly #limit: number
  readonly #windowMs: number

  constructor(limit: number, windowMs: number, maxKeys: number, clock: () => number) {
    super(maxKeys, clock)
    this.#limit = limit
    this.#windowMs = windowMs
  }

  take(key: string): boolean {
    const now = this.clock()
    const index = Math.floor(now / this.#windowMs)
    let window = this.touch(key, now)
    if (window === undefined) {
      window = { key, older: undefined, newer: undefined, index, count: 0 }
      this.insert(window, now)
    } else if (index > window.index) {
      // Only forward: a wall clock stepped back keeps counting in the window it was in.
      window.index = index
      window.count = 0
    }
    const allowed = window.count < this.#limit
    if (allowed) window.count++
    this.remaining = this.#limit - window.count
    this.resetMs = (window.index + 1) * this.#windowMs - now
    this.retryMs = allowed ? 0 : this.resetMs
    return allowed
  }

  refund(key: string): void {
    const window = this.entries.get(key)
    if (window !== undefined && window.count > 0) window.count--
  }

  protected idle(window: Window, now: number): boolean {
    return Math.floor(now / this.#windowMs) > window.index
  }
}
