/**
 * Decisions by key for a short time, at most maxEntries of them: a Map keeps insertion order, so the
 * oldest entry is the first one, and one that expired is dropped when it is next looked up.
 */
export class DecisionCache<Decision> {
  readonly #entries = new Map<string, { decision: Decision; expiresAt: number }>()
  readonly #ttlMs: number
  readonly #maxEntries: number

  constructor(ttlMs: number, maxEntries: number) {
    this.#ttlMs = ttlMs
    this.#maxEntries = maxEntries
  }

  get(key: string, now: number): Decision | undefined {
    const entry = this.#entries.get(key)
    if (entry === undefined) return undefined
    if (entry.expiresAt > now) return entry.decision
    this.#entries.delete(key)
    return undefined
  }

  set(key: string, decision: Decision, now: number): void {
    this.#entries.delete(key)
    if (this.#entries.size >= this.#maxEntries) this.#entries.delete(this.#entries.keys().next().value!)
    this.#entries.set(key, { decision, expiresAt: now + this.#ttlMs })
  }

  get size(): number {
    return this.#entries.size
  }
}
