/** Where a policy text is fetched from, and how long one fetch may take. */
export interface SourceSettings {
  url: string
  timeoutMs: number
}

/**
 * The policy as a central place serves it. Polls with If-None-Match, so an unchanged policy costs the
 * server a 304 and the gateway nothing; one URL can serve a whole fleet.
 */
export class ControlSource {
  readonly #settings: SourceSettings
  readonly #fetch: typeof fetch
  #etag: string | undefined
  #text: string | undefined
  #answered = false

  constructor(settings: SourceSettings, fetchImpl: typeof fetch = fetch) {
    this.#settings = settings
    this.#fetch = fetchImpl
  }

  get url(): string {
    return this.#settings.url
  }

  /** Whether the last read got a 200 or a 304: false after a refused connection, a timeout or an error status. */
  get answered(): boolean {
    return this.#answered
  }

  /** The current policy text; the last one read when the source says it has not changed. */
  async read(): Promise<string> {
    const headers = new Headers({ accept: 'application/toml, text/plain;q=0.9, */*;q=0.1' })
    if (this.#etag !== undefined && this.#text !== undefined) headers.set('if-none-match', this.#etag)
    this.#answered = false
    const response = await this.#fetch(this.#settings.url, { headers, signal: AbortSignal.timeout(this.#settings.timeoutMs) })
    if (response.status === 304 && this.#text !== undefined) {
      this.#answered = true
      await response.body?.cancel()
      return this.#text
    }
    if (!response.ok) {
      await response.body?.cancel()
      throw new Error(`${this.#settings.url} answered ${response.status}`)
    }
    const text = await response.text()
    this.#answered = true
    this.#etag = response.headers.get('etag') ?? undefined
    this.#text = text
    return text
  }
}
