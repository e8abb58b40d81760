/**
 * Linkerd's retry budget (after Finagle): over the last `ttlMs`, retries may be at most `ratio` of
 * requests plus `minPerSecond` per second of the window. Counted in one-second buckets, so memory is
 * fixed and a retry storm against a dead upstream adds at most ratio × load + floor.
 */
export class RetryBudget {
  readonly #ratio: number
  readonly #floor: number
  readonly #requests: Float64Array
  readonly #retries: Float64Array
  readonly #bucketMs: number
  #bucket = 0
  #bucketStart: number

  constructor(ratio: number, minPerSecond: number, ttlMs: number, now: number) {
    const buckets = Math.max(1, Math.round(ttlMs / 1000))
    this.#ratio = ratio
    this.#floor = minPerSecond * (ttlMs / 1000)
    this.#requests = new Float64Array(buckets)
    this.#retries = new Float64Array(buckets)
    this.#bucketMs = ttlMs / buckets
    this.#bucketStart = now
  }

  /** Every request deposits; called once per request, not per try. */
  deposit(now: number): void {
    this.#advance(now)
    this.#requests[this.#bucket]!++
  }

  /** True, and counted, if one more retry fits in the budget. */
  tryWithdraw(now: number): boolean {
    this.#advance(now)
    const allowed = this.#ratio * sum(this.#requests) + this.#floor
    if (sum(this.#retries) + 1 > allowed) return false
    this.#retries[this.#bucket]!++
    return true
  }

  #advance(now: number): void {
    const elapsed = Math.floor((now - this.#bucketStart) / this.#bucketMs)
    if (elapsed <= 0) return
    const size = this.#requests.length
    for (let i = 1; i <= Math.min(elapsed, size); i++) {
      const index = (this.#bucket + i) % size
      this.#requests[index] = 0
      this.#retries[index] = 0
    }
    this.#bucket = (this.#bucket + elapsed) % size
    this.#bucketStart += elapsed * this.#bucketMs
  }
}

function sum(values: Float64Array): number {
  let total = 0
  for (const value of values) total += value
  return total
}
