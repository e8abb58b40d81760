/**
 * The last good GET/HEAD answer per method + path + query, for fallback = { stale = "5m" }: NGINX's
 * proxy_cache_use_stale without a cache in front of it. Answers are copied as they stream to the
 * client, never buffered ahead of it, and memory is bounded per entry and overall (LRU by Map order).
 */

export interface StaleLimits {
  /** Larger bodies pass through uncopied. */
  maxEntryBytes: number
  maxEntries: number
  /** Sum of stored body bytes. */
  maxTotalBytes: number
}

export const DEFAULT_STALE_LIMITS: StaleLimits = { maxEntryBytes: 1024 ** 2, maxEntries: 1000, maxTotalBytes: 32 * 1024 ** 2 }

export interface StaleEntry {
  status: number
  statusText: string
  headers: Headers
  body: Uint8Array<ArrayBuffer>
  storedAt: number
  /** Request headers the answer said it varies on, as that request sent them. */
  vary: Array<[name: string, value: string | null]>
}

export class StaleCache {
  readonly maxAgeMs: number
  readonly limits: StaleLimits
  readonly #entries = new Map<string, StaleEntry>()
  #bytes = 0

  constructor(maxAgeMs: number, limits: StaleLimits = DEFAULT_STALE_LIMITS) {
    this.maxAgeMs = maxAgeMs
    this.limits = limits
  }

  get size(): number {
    return this.#entries.size
  }

  get bytes(): number {
    return this.#bytes
  }

  /** A fresh-enough entry this request may be given, or undefined. */
  get(key: string, request: Request, now: number): StaleEntry | undefined {
    const entry = this.#entries.get(key)
    if (entry === undefined) return undefined
    if (now - entry.storedAt >= this.maxAgeMs) {
      this.#delete(key, entry)
      return undefined
    }
    if (!suits(entry, request)) return undefined
    // Re-inserting moves it to the young end: Map order is the LRU order.
    this.#entries.delete(key)
    this.#entries.set(key, entry)
    return entry
  }

  put(key: string, entry: StaleEntry): void {
    const size = entry.body.byteLength
    if (size > this.limits.maxEntryBytes) return
    const old = this.#entries.get(key)
    if (old !== undefined) this.#delete(key, old)
    this.#entries.set(key, entry)
    this.#bytes += size
    for (const [oldestKey, oldest] of this.#entries) {
      if (this.#entries.size <= this.limits.maxEntries && this.#bytes <= this.limits.maxTotalBytes) break
      this.#delete(oldestKey, oldest)
    }
  }

  /**
   * The response to send on, its body copied into the cache as the client reads it; stored when the
   * body ends, dropped if it fails, is cancelled or grows past maxEntryBytes.
   */
  capture(key: string, request: Request, response: Response, now: () => number): Response {
    const declared = Number(response.headers.get('content-length') ?? 0)
    if (declared > this.limits.maxEntryBytes) return response
    const headers = new Headers(response.headers)
    headers.delete('x-request-id')
    const entry: StaleEntry = { status: response.status, statusText: response.statusText, headers, body: EMPTY, storedAt: 0, vary: varyOf(request, response) }
    if (response.body === null) {
      entry.storedAt = now()
      this.put(key, entry)
      return response
    }
    const source = new CopyingSource(response.body.getReader(), this, key, entry, now)
    return new Response(new ReadableStream(source), { status: response.status, statusText: response.statusText, headers: response.headers })
  }

  #delete(key: string, entry: StaleEntry): void {
    this.#entries.delete(key)
    this.#bytes -= entry.body.byteLength
  }
}

const EMPTY = new Uint8Array(0)

/** Whether an answer may be kept for the next caller of the same URL (RFC 9111's rules for shared caches, in short). */
export function storable(request: Request, response: Response): boolean {
  const cacheControl = response.headers.get('cache-control')?.toLowerCase() ?? ''
  if (cacheControl.includes('no-store') || cacheControl.includes('private')) return false
  // The key names no user: one user's cookie or personal answer must not reach the next caller.
  if (response.headers.has('set-cookie')) return false
  if ((request.headers.has('authorization') || request.headers.has('cookie')) && !cacheControl.includes('public')) return false
  return !(response.headers.get('vary') ?? '').includes('*')
}

function varyOf(request: Request, response: Response): StaleEntry['vary'] {
  const vary = response.headers.get('vary')
  if (vary === null) return []
  return vary
    .split(',')
    .map((name) => name.trim().toLowerCase())
    .filter((name) => name !== '' && name !== 'accept-encoding') // checked against content-encoding instead
    .map((name) => [name, request.headers.get(name)])
}

/** A compressed answer only goes to a client that accepts that encoding; Vary'd headers must match. */
function suits(entry: StaleEntry, request: Request): boolean {
  const encoding = entry.headers.get('content-encoding')
  if (encoding !== null && encoding !== 'identity' && !(request.headers.get('accept-encoding') ?? '').toLowerCase().includes(encoding.toLowerCase())) {
    return false
  }
  for (const [name, value] of entry.vary) if (request.headers.get(name) !== value) return false
  return true
}

/** Passes each chunk on as it arrives and keeps a copy; a class rather than closures, one per captured answer. */
class CopyingSource implements UnderlyingDefaultSource<Uint8Array> {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>
  readonly #cache: StaleCache
  readonly #key: string
  readonly #entry: StaleEntry
  readonly #now: () => number
  /** undefined once the copy has been given up. */
  #chunks: Uint8Array[] | undefined = []
  #size = 0

  constructor(reader: ReadableStreamDefaultReader<Uint8Array>, cache: StaleCache, key: string, entry: StaleEntry, now: () => number) {
    this.#reader = reader
    this.#cache = cache
    this.#key = key
    this.#entry = entry
    this.#now = now
  }

  async pull(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    let result: ReadableStreamReadResult<Uint8Array>
    try {
      result = await this.#reader.read()
    } catch (error) {
      this.#chunks = undefined
      controller.error(error)
      return
    }
    if (result.done) {
      controller.close()
      this.#store()
      return
    }
    const chunk = result.value
    if (this.#chunks !== undefined) {
      this.#size += chunk.byteLength
      // slice(): the chunk goes on to the client, whose side may reuse or transfer its buffer.
      if (this.#size <= this.#cache.limits.maxEntryBytes) this.#chunks.push(chunk.slice())
      else this.#chunks = undefined
    }
    controller.enqueue(chunk)
  }

  cancel(reason: unknown): Promise<void> {
    this.#chunks = undefined
    return this.#reader.cancel(reason)
  }

  #store(): void {
    const chunks = this.#chunks
    if (chunks === undefined) return
    this.#chunks = undefined
    const body = new Uint8Array(this.#size)
    let offset = 0
    for (const chunk of chunks) {
      body.set(chunk, offset)
      offset += chunk.byteLength
    }
    this.#entry.body = body
    this.#entry.storedAt = this.#now()
    this.#cache.put(this.#key, this.#entry)
  }
}
