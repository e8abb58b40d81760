import * as v from 'valibot'
import { describeValue, expectedGot } from '../../core/config-error.ts'
import { integer, name, table, text } from '../../core/schema-kit.ts'
import { GatewayError, type ErrorCode } from '../../core/errors.ts'
import type { Exchange, Layer, Step } from '../../proxy/exchange.ts'
import { isTable, upstreamReference } from '../shared/references.ts'
import type { PolicyModule, RouteContext } from '../policy.ts'
import { StaleCache, storable, type StaleEntry } from './stale-cache.ts'
import { positiveDuration } from '../../core/schema-kit.ts'

const DEFAULT_STATUS = 200
const DEFAULT_CONTENT_TYPE = 'text/plain; charset=utf-8'
/** Statuses whose responses cannot carry a body (the Response constructor refuses one). */
const NULL_BODY_STATUSES = new Set([204, 205, 304])

const fallbackTable = table({
  stale: v.optional(positiveDuration()),
  upstream: v.optional(name()),
  status: v.optional(integer(200, 599)),
  content_type: v.optional(text()),
  body: v.optional(v.string((issue) => expectedGot('a string', issue.input))),
})

const fallbackSchema = v.pipe(
  fallbackTable,
  v.check(
    (file) => file.stale !== undefined || file.upstream !== undefined || file.status !== undefined || file.body !== undefined,
    'expected at least one of stale, upstream, status or body',
  ),
  v.forward(
    v.partialCheck(
      [['content_type'], ['status'], ['body']],
      ({ content_type, status, body }) => content_type === undefined || status !== undefined || body !== undefined,
      'content_type only applies to a static answer: set status or body too',
    ),
    ['content_type'],
  ),
  v.forward(
    v.partialCheck(
      [['status'], ['body']],
      ({ status, body }) => status === undefined || !NULL_BODY_STATUSES.has(status) || body === undefined || body === '',
      (issue) => `a ${issue.input.status} answer has no body, got ${describeValue(issue.input.body)}`,
    ),
    ['body'],
  ),
  v.transform((file): FallbackPolicy => {
    const policy: FallbackPolicy = {}
    if (file.stale !== undefined) policy.staleMs = file.stale
    if (file.upstream !== undefined) policy.upstream = file.upstream
    if (file.status !== undefined || file.body !== undefined) {
      policy.static = { status: file.status ?? DEFAULT_STATUS, contentType: file.content_type ?? DEFAULT_CONTENT_TYPE, body: file.body ?? '' }
    }
    return policy
  }),
)

/** What the client gets when the upstream cannot answer: the last good answer, another upstream, or a fixed one. */
export const fallbackPolicy: PolicyModule<FallbackPolicy, 'fallback'> = {
  key: 'fallback',
  field: 'fallback',
  schema: fallbackSchema,
  builtInDefault: undefined,
  references: (value, at, file) => (isTable(value) ? upstreamReference(value.upstream, `${at}.upstream`, file) : []),
  layer: (policy, context) => fallbackLayer(policy, context),
}

/** Failures a fallback answers for; client_closed is not one (nobody is left to answer). */
const RESCUED = new Set<ErrorCode>(['circuit_open', 'upstream_unavailable', 'upstream_timeout', 'bulkhead_full'])

type FallbackKind = 'stale' | 'upstream' | 'static'

/**
 * The outermost layer. On a rescued error or a 5xx answer it tries, in order, the stale answer, the
 * other upstream and the static answer; the response says which in x-pillion-fallback. With `stale`
 * set, every good GET/HEAD answer is copied into the cache as it streams to the client.
 */
export function fallbackLayer(policy: FallbackPolicy, context: RouteContext): Layer {
  const route = context.route.name
  const events = context.events
  const now = context.now
  const staleMs = policy.staleMs
  const cache = staleMs === undefined ? undefined : context.keep('stale', staleMs, () => new StaleCache(staleMs))
  const alternate = policy.upstream === undefined ? undefined : otherUpstream(context, policy.upstream)
  const fixed = policy.static === undefined ? undefined : staticAnswer(policy.static)

  function served(kind: FallbackKind, cause: string, response: Response, exchange: Exchange): Response {
    response.headers.set('x-pillion-fallback', kind)
    response.headers.set('x-request-id', exchange.requestId)
    events.emit('fallback_served', { route, kind, cause })
    return response
  }

  /** A fallback answer, or undefined when none applies. */
  async function rescue(exchange: Exchange, cause: string): Promise<Response | undefined> {
    const request = exchange.request
    if (cache !== undefined && isRead(request.method)) {
      const entry = cache.get(cacheKey(exchange), request, now())
      if (entry !== undefined) return served('stale', cause, staleResponse(entry, request.method, now()), exchange)
    }
    if (alternate !== undefined) {
      const response = await alternate(exchange)
      if (response !== undefined) return served('upstream', cause, response, exchange)
    }
    if (fixed !== undefined) return served('static', cause, fixed(request.method), exchange)
    return undefined
  }

  return (next) =>
    async function fallback(exchange) {
      let response: Response
      try {
        response = await next(exchange)
      } catch (error) {
        if (!(error instanceof GatewayError) || !RESCUED.has(error.code)) throw error
        const rescued = await rescue(exchange, error.code)
        if (rescued === undefined) throw error
        return rescued
      }
      const status = response.status
      if (status >= 500) {
        const rescued = await rescue(exchange, `status_${status}`)
        if (rescued === undefined) return response
        response.body?.cancel().catch(ignore)
        return rescued
      }
      const request = exchange.request
      // An accepted WebSocket's answer is the client's 101 to be: nothing to keep for later.
      if (cache !== undefined && exchange.session === undefined && status >= 200 && status < 300 && isRead(request.method) && storable(request, response)) {
        return cache.capture(cacheKey(exchange), request, response, now)
      }
      return response
    }
}

function isRead(method: string): boolean {
  return method === 'GET' || method === 'HEAD'
}

function cacheKey(exchange: Exchange): string {
  return `${exchange.request.method} ${exchange.path}${exchange.search}`
}

function ignore(): void {}

function staleResponse(entry: StaleEntry, method: string, now: number): Response {
  const headers = new Headers(entry.headers)
  headers.set('age', String(Math.floor((now - entry.storedAt) / 1000)))
  // It is already past its best: caches downstream must not keep it as if it were fresh.
  headers.set('cache-control', 'no-cache')
  const body = method === 'HEAD' || NULL_BODY_STATUSES.has(entry.status) ? null : entry.body
  return new Response(body, { status: entry.status, statusText: entry.statusText, headers })
}

/** The static answer, its bytes and headers prepared once; each call builds a fresh Response. */
function staticAnswer(answer: NonNullable<FallbackPolicy['static']>): (method: string) => Response {
  const bytes = new TextEncoder().encode(answer.body)
  const status = answer.status
  const noBody = NULL_BODY_STATUSES.has(status)
  const contentType = answer.contentType
  return (method) => {
    const headers = new Headers()
    if (!noBody) headers.set('content-type', contentType)
    return new Response(noBody || method === 'HEAD' ? null : bytes, { status, headers })
  }
}

/**
 * Sends the request once to another upstream; undefined when it cannot be resent (its body stream
 * was already consumed) or the other upstream failed too (an error, or a 5xx of its own).
 */
function otherUpstream(context: RouteContext, upstreamName: string): (exchange: Exchange) => Promise<Response | undefined> {
  const upstream = context.upstreams.get(upstreamName)
  // load.ts checks the name for routes; this catches any path around that check at load, not per request.
  if (upstream === undefined) throw new Error(`fallback upstream ${JSON.stringify(upstreamName)} is not defined`)
  const forward: Step = context.forwardTo(upstream)
  const timeoutMs = context.route.timeoutMs
  const timeoutMessage = `no complete response from fallback upstream ${upstreamName} within ${timeoutMs}ms`
  return async function sendElsewhere(exchange) {
    if (!canResend(exchange)) return undefined
    const clientSignal = exchange.request.signal
    if (clientSignal.aborted) return undefined
    // The exchange's own signal may already be aborted by the route timeout: this try gets its own,
    // ended by the client leaving or by a fresh timeout of the route's length.
    const controller = new AbortController()
    const onClientGone = () => controller.abort(new GatewayError('client_closed', 'the client closed the connection'))
    clientSignal.addEventListener('abort', onClientGone, { once: true })
    const timer = timeoutMs > 0 ? setTimeout(() => controller.abort(new GatewayError('upstream_timeout', timeoutMessage)), timeoutMs) : undefined
    exchange.onFinish(() => {
      clearTimeout(timer)
      clientSignal.removeEventListener('abort', onClientGone)
    })
    exchange.attemptSignal = controller.signal
    exchange.tried = undefined
    let response: Response
    try {
      response = await forward(exchange)
    } catch (error) {
      if (error instanceof GatewayError && error.code === 'client_closed') throw error
      return undefined
    }
    if (response.status < 500) return response
    response.body?.cancel().catch(ignore)
    return undefined
  }
}

/** A request body can go out again only if there was none, it was buffered, or nothing has read it yet. */
function canResend(exchange: Exchange): boolean {
  return exchange.body === null || exchange.replayableBody !== undefined || exchange.attempts === 0
}

export interface FallbackPolicy {
  /** Serve the last good GET/HEAD 2xx response for this method+path if younger than this. */
  staleMs?: number
  /** Send the request to this upstream instead. */
  upstream?: string
  /** A fixed answer; set when status or body is given. */
  static?: { status: number; contentType: string; body: string }
}

declare module '../../core/events.ts' {
  interface GatewayEventMap {
    fallback_served: { route: string; kind: 'stale' | 'upstream' | 'static'; cause: string }
  }
}
