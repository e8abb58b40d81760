import { createLocalJWKSet, errors, type JWTVerifyGetKey } from 'jose'
import type { EventBus, GatewayEventMap } from '../../core/events.ts'

type RefreshReason = GatewayEventMap['jwks_refresh']['reason']

/** Envoy's remote_jwks cache_duration default: used when the JWKS response has no max-age. */
export const DEFAULT_MAX_AGE_MS = 600_000
/** A max-age below this (no-store included) still keeps the keys this long, so no request pays for a fetch. */
export const MIN_MAX_AGE_MS = 30_000
/** Keys are refetched at least daily, whatever the server says. */
export const MAX_MAX_AGE_MS = 86_400_000
/** jose's createRemoteJWKSet cooldownDuration: at most one refetch for unknown "kid"s per 30s. */
export const UNKNOWN_KID_COOLDOWN_MS = 30_000
/** After a failed fetch, wait this long before the next (Envoy's failed_refetch_duration). */
export const FAILED_REFETCH_MS = 1_000
const FETCH_TIMEOUT_MS = 5_000
const MAX_JWKS_BYTES = 1 << 20

/** No keys could ever be fetched; tokens cannot be verified yet. */
export class JwksUnavailableError extends Error {
  override name = 'JwksUnavailableError'
}

export interface JwksOptions {
  fetch: typeof fetch
  now: () => number
  events: EventBus
}

/**
 * A remote JWKS with the caching Hono's jwk middleware lacks (it fetches on every request):
 * - keys are kept for the response's Cache-Control max-age, clamped to [30s, 24h], 10 min without one;
 * - once stale they are refreshed in the background while the old keys keep verifying;
 * - a token whose "kid" is unknown triggers one refetch, at most one per 30s, so a flood of made-up
 *   kids cannot hammer the JWKS server;
 * - a failed fetch (outage, bad JSON) keeps the keys we have; the next try is 1s later at the earliest.
 * Only web-standard fetch, so it runs in the core under every runtime.
 */
export class RemoteJwks {
  readonly url: string
  readonly #options: JwksOptions
  #keys: JWTVerifyGetKey | undefined
  #keyCount = 0
  #staleAt = 0
  #nextTryAt = 0
  #lastUnknownKidRefresh = Number.NEGATIVE_INFINITY
  #inFlight: Promise<void> | undefined

  constructor(url: string, options: JwksOptions) {
    this.url = url
    this.#options = options
  }

  /** jose's key resolver shape: picks the key for a token's header. */
  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    const now = this.#options.now()
    if (this.#keys === undefined) {
      if (now >= this.#nextTryAt) await this.#refresh('initial')
      if (this.#keys === undefined) throw new JwksUnavailableError(`no keys from ${this.url} yet`)
    } else if (now >= this.#staleAt && now >= this.#nextTryAt) {
      void this.#refresh('expired')
    }
    try {
      return await this.#keys(header, token)
    } catch (error) {
      if (!(error instanceof errors.JWKSNoMatchingKey)) throw error
      if (now - this.#lastUnknownKidRefresh < UNKNOWN_KID_COOLDOWN_MS || now < this.#nextTryAt) throw error
      this.#lastUnknownKidRefresh = now
      await this.#refresh('unknown_kid')
      return this.#keys!(header, token)
    }
  }

  /** The refresh in flight, if any; resolves when it is done (a background refresh is not awaited by requests). */
  settled(): Promise<void> {
    return this.#inFlight ?? Promise.resolve()
  }

  /** One fetch at a time; callers that arrive meanwhile share it. Never rejects. */
  #refresh(reason: RefreshReason): Promise<void> {
    this.#inFlight ??= this.#fetchKeys(reason).finally(() => {
      this.#inFlight = undefined
    })
    return this.#inFlight
  }

  async #fetchKeys(reason: RefreshReason): Promise<void> {
    const { fetch, now, events } = this.#options
    try {
      const response = await fetch(this.url, {
        headers: { accept: 'application/json' },
        signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
      })
      if (response.status !== 200) {
        await response.body?.cancel()
        throw new Error(`status ${response.status}`)
      }
      const text = await response.text()
      if (text.length > MAX_JWKS_BYTES) throw new Error('response larger than 1 MiB')
      const jwks = JSON.parse(text) as { keys?: unknown }
      const keys = createLocalJWKSet(jwks as Parameters<typeof createLocalJWKSet>[0])
      const fetchedAt = now()
      this.#keys = keys
      this.#keyCount = Array.isArray(jwks.keys) ? jwks.keys.length : 0
      this.#staleAt = fetchedAt + cacheLifetimeMs(response.headers.get('cache-control'))
      this.#nextTryAt = 0
      events.emit('jwks_refresh', { url: this.url, reason, ok: true, keys: this.#keyCount })
    } catch (error) {
      this.#nextTryAt = now() + FAILED_REFETCH_MS
      const message = error instanceof Error ? error.message : String(error)
      events.emit('jwks_refresh', { url: this.url, reason, ok: false, keys: this.#keyCount, error: message })
    }
  }
}

/** Cache-Control max-age (s-maxage for a shared cache first), clamped; no-store and no-cache count as 0. */
export function cacheLifetimeMs(cacheControl: string | null): number {
  if (cacheControl === null) return DEFAULT_MAX_AGE_MS
  const directives = cacheControl.toLowerCase()
  if (/(?:^|,)\s*no-(?:store|cache)\b/.test(directives)) return MIN_MAX_AGE_MS
  const maxAge = /(?:^|,)\s*s-maxage\s*=\s*"?(\d+)/.exec(directives) ?? /(?:^|,)\s*max-age\s*=\s*"?(\d+)/.exec(directives)
  if (maxAge === null) return DEFAULT_MAX_AGE_MS
  return Math.min(MAX_MAX_AGE_MS, Math.max(MIN_MAX_AGE_MS, Number(maxAge[1]) * 1000))
}
