/**
 * The breaker's view of recent calls: how many, how many failed, how many were slow. Two shapes, as in
 * resilience4j: a sliding time window (bucketed, so memory is fixed whatever the traffic) and a
 * count window (the last N calls, a ring buffer). Totals are kept running, so reading them is O(1).
 */
export interface OutcomeWindow {
  calls: number
  failures: number
  slowCalls: number
  record(now: number, failed: boolean, slow: boolean): void
  /** Drops what has aged out by `now`; read the totals after this. */
  advance(now: number): void
  clear(): void
}

/** opossum's rollingCountBuckets: ten buckets per window, so a call ages out within a tenth of the window. */
const TIME_BUCKETS = 10

/**
 * Calls in the last `windowMs`, in ten buckets of a tenth of the window each. The newest bucket is
 * still filling, so the window covers between nine and ten tenths of `windowMs` of history.
 */
export class TimeWindow implements OutcomeWindow {
  calls = 0
  failures = 0
  slowCalls = 0
  readonly #bucketMs: number
  readonly #calls = new Uint32Array(TIME_BUCKETS)
  readonly #failures = new Uint32Array(TIME_BUCKETS)
  readonly #slow = new Uint32Array(TIME_BUCKETS)
  /** The newest bucket number (time / bucketMs) advanced to; bucket n lives in slot n % 10. */
  #head = Number.NEGATIVE_INFINITY

  constructor(windowMs: number) {
    this.#bucketMs = Math.max(1, Math.ceil(windowMs / TIME_BUCKETS))
  }

  record(now: number, failed: boolean, slow: boolean): void {
    this.advance(now)
    const slot = this.#head % TIME_BUCKETS
    this.#calls[slot]!++
    this.calls++
    if (failed) {
      this.#failures[slot]!++
      this.failures++
    }
    if (slow) {
      this.#slow[slot]!++
      this.slowCalls++
    }
  }

  advance(now: number): void {
    const bucket = Math.floor(now / this.#bucketMs)
    if (bucket <= this.#head) return
    // Only the slots between the old head and the new one age out; at most all ten.
    const from = Math.max(this.#head + 1, bucket - TIME_BUCKETS + 1, 0)
    for (let number = from; number <= bucket; number++) this.#reset(number % TIME_BUCKETS)
    this.#head = bucket
  }

  clear(): void {
    for (let slot = 0; slot < TIME_BUCKETS; slot++) this.#reset(slot)
  }

  #reset(slot: number): void {
    this.calls -= this.#calls[slot]!
    this.failures -= this.#failures[slot]!
    this.slowCalls -= this.#slow[slot]!
    this.#calls[slot] = 0
    this.#failures[slot] = 0
    this.#slow[slot] = 0
  }
}

const FAILED = 1
const SLOW = 2

/** The last `size` calls, whatever their age: one byte per call. */
export class CountWindow implements OutcomeWindow {
  calls = 0
  failures = 0
  slowCalls = 0
  readonly #outcomes: Uint8Array
  #next = 0

  constructor(size: number) {
    this.#outcomes = new Uint8Array(size)
  }

  record(_now: number, failed: boolean, slow: boolean): void {
    const size = this.#outcomes.length
    if (this.calls === size) this.#forget(this.#outcomes[this.#next]!)
    else this.calls++
    const outcome = (failed ? FAILED : 0) | (slow ? SLOW : 0)
    this.#outcomes[this.#next] = outcome
    if (failed) this.failures++
    if (slow) this.slowCalls++
    this.#next = (this.#next + 1) % size
  }

  advance(): void {}

  clear(): void {
    this.#outcomes.fill(0)
    this.#next = 0
    this.calls = 0
    this.failures = 0
    this.slowCalls = 0
  }

  #forget(outcome: number): void {
    if (outcome & FAILED) this.failures--
    if (outcome & SLOW) this.slowCalls--
  }
}
