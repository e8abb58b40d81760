interface Entry {
  payload: Record<string, unknown>
  until: number
}

/**
 * Tokens this route has verified, so a client that sends the same token again costs a map lookup
 * rather than a signature check (RS256 verification is ~80 µs on Bun). Envoy's jwt_authn keeps the
 * same kind of cache (jwt_cache_config). An entry lives until the token expires, and never longer
 * than maxAgeMs, so a key withdrawn from the JWKS stops being honoured within that time; the map
 * holds at most maxEntries tokens, least recently used out first.
 */
export class VerifiedTokens {
  readonly #entries = new Map<string, Entry>()
  /**
   * The most recently used token and its entry, always the map's newest. A client repeats its token
   * request after request: comparing it is a memcmp, where a map lookup first hashes all of a new
   * string's several hundred characters (about 2 µs a request on Node, 0.4 µs on Bun).
   */
  #lastToken: string | undefined
  #lastEntry: Entry | undefined
  readonly #maxEntries: number
  readonly #maxAgeMs: number

  constructor(maxEntries = 1000, maxAgeMs = 300_000) {
    this.#maxEntries = maxEntries
    this.#maxAgeMs = maxAgeMs
  }

  get size(): number {
    return this.#entries.size
  }

  get(token: string, nowMs: number): Record<string, unknown> | undefined {
    const recent = token === this.#lastToken
    const entry = recent ? this.#lastEntry : this.#entries.get(token)
    if (entry === undefined) return undefined
    if (nowMs >= entry.until) {
      this.#entries.delete(token)
      if (recent) this.#lastToken = this.#lastEntry = undefined
      return undefined
    }
    if (!recent) this.#newest(token, entry)
    return entry.payload
  }

  /** Remembers a verified token; `exp` (seconds) plus the allowed clock skew bounds its life. */
  remember(token: string, payload: Record<string, unknown>, nowMs: number, skewMs: number): void {
    const exp = typeof payload.exp === 'number' ? payload.exp * 1000 + skewMs : Number.POSITIVE_INFINITY
    const until = Math.min(exp, nowMs + this.#maxAgeMs)
    if (until <= nowMs) return
    this.#newest(token, { payload, until })
    if (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next().value!
      this.#entries.delete(oldest)
      if (oldest === this.#lastToken) this.#lastToken = this.#lastEntry = undefined
    }
  }

  /** Moves the token to the map's newest end (least recently used goes first) and remembers it as the last one. */
  #newest(token: string, entry: Entry): void {
    this.#entries.delete(token)
    this.#entries.set(token, entry)
    this.#lastToken = token
    this.#lastEntry = entry
  }
}
