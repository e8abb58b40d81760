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

  constructor(settings: SourceSettings, fetchImpl: typeof fetch = fetch) {
    this.#settings = settings
    this.#fetch = fetchImpl
  }

  get url(): string {
    return this.#settings.url
  }

  /** The current policy text; the last one read when the source says it has not changed. */
  async read(): Promise<string> {
    const headers = new Headers({ accept: 'application/toml, text/plain;q=0.9, */*;q=0.1' })
    if (this.#etag !== undefined && this.#text !== undefined) headers.set('if-none-match', this.#etag)
    const response = await this.#fetch(this.#settings.url, { headers, signal: AbortSignal.timeout(this.#settings.timeoutMs) })
    if (response.status === 304 && this.#text !== undefined) {
      await response.body?.cancel()
      return this.#text
    }
    if (!response.ok) {
      await response.body?.cancel()
      throw new Error(`${this.#settings.url} answered ${response.status}`)
    }
    const text = await response.text()
    this.#etag = response.headers.get('etag') ?? undefined
    this.#text = text
    return text
  }
}
