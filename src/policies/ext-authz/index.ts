import { GatewayError } from '../../core/errors.ts'
import type { GatewayEventMap } from '../../core/events.ts'
import type { UpstreamAnswer, UpstreamClient } from '../../core/host.ts'
import { discardBody } from '../../core/body.ts'
import type { Exchange, Layer, Step, UpstreamHeaderEdit } from '../../proxy/exchange.ts'
import { peekBody } from '../../proxy/replay.ts'
import { concatBytes } from '../../core/body.ts'
import { compileTemplate, type HeaderTemplate } from '../shared/header-template.ts'
import type { PolicyModule, RouteContext } from '../policy.ts'
import { DecisionCache } from './decision-cache.ts'
import { extAuthzSchema, type ExtAuthzPolicy } from './schema.ts'

export type { ExtAuthzPolicy } from './schema.ts'

/** [routes.ext_authz]: Envoy's ext_authz over HTTP, Traefik's forwardAuth, NGINX's auth_request. */
export const extAuthzPolicy: PolicyModule<ExtAuthzPolicy, 'extAuthz'> = {
  key: 'ext_authz',
  field: 'extAuthz',
  schema: extAuthzSchema,
  builtInDefault: undefined,
  resolveFiles: (policy, resolve) => (policy.ca === undefined ? policy : { ...policy, ca: resolve(policy.ca) }),
  layer: (policy, context) => extAuthzLayer(policy, context),
}

/** An authorizer's refusal is passed on whole up to this size; a larger body is an error (on_error). */
const MAX_DENIAL_BODY = 64 * 1024

/** What the authorizer decided, as it can be remembered and applied again. */
type Decision = { allowed: true; edits: readonly UpstreamHeaderEdit[] } | { allowed: false; status: number; headers: ReadonlyArray<readonly [string, string]>; body: Uint8Array<ArrayBuffer> }

class AuthorizerTimeout extends Error {}

/**
 * Asks the authorization service about each request before it goes on: a GET to `url` (a POST with
 * the body's first include_body bytes) carrying the listed request headers and X-Forwarded-Method,
 * -Uri, -Host, -Proto and -For, as Traefik's forwardAuth and the authorizers built for it
 * (oauth2-proxy, Authelia) expect. A 2xx lets the request through, with the listed headers of the
 * answer set on the upstream request (and the client's own of those names removed); any other answer
 * goes back to the client as the authorizer gave it, with the headers client_headers allows. No
 * answer within the timeout, or none at all, follows on_error. The call goes through the gateway's
 * upstream client, so connections to the authorizer are kept alive and reused.
 *
 * @example extAuthzLayer({ url: 'http://127.0.0.1:9000/check', headers: ['authorization'], upstreamHeaders: ['x-user-id'], clientHeaders: ['www-authenticate'], timeoutMs: 200, onError: 'deny', includeBodyBytes: 0 }, context)
 */
export function extAuthzLayer(policy: ExtAuthzPolicy, context: RouteContext): Layer {
  const send = context.gateway.send
  if (send === undefined) throw new Error(`routes.${context.route.name}.ext_authz: the gateway gave no upstream client to call the authorizer with`)
  const route = context.route.name
  const events = context.events
  const { url, timeoutMs, onError } = policy
  const cacheKey: HeaderTemplate | undefined =
    policy.cache === undefined ? undefined : compileTemplate(policy.cache.key, { route, upstream: context.upstream.config.name })
  const cache = policy.cache === undefined ? undefined : context.keep('ext-authz-cache', policy, () => new DecisionCache<Decision>(policy.cache!.ttlMs, policy.cache!.maxEntries))
  const ask = authorizer(policy, send)
  // Whatever the answer, a client's own copy of an upstream header never gets through: a failed-open
  // request goes on without them, an allowed one with the authorizer's values.
  const removeClientCopies: readonly UpstreamHeaderEdit[] = policy.upstreamHeaders.map((name) => [name, null])
  const decided = {
    allowed: Object.freeze({ route, result: 'allowed', cached: false }),
    denied: Object.freeze({ route, result: 'denied', cached: false }),
    allowedCached: Object.freeze({ route, result: 'allowed', cached: true }),
    deniedCached: Object.freeze({ route, result: 'denied', cached: true }),
  } satisfies Record<string, GatewayEventMap['ext_authz_decision']>
  const timeoutMessage = `the authorization service did not answer within ${timeoutMs}ms`

  const apply = (exchange: Exchange, decision: Decision, next: Step): Promise<Response> => {
    if (decision.allowed) {
      const edits = (exchange.upstreamHeaderEdits ??= [])
      for (const edit of decision.edits) edits.push(edit)
      return next(exchange)
    }
    exchange.authz = 'ext_authz'
    const headers = new Headers()
    for (const [name, value] of decision.headers) headers.append(name, value)
    headers.set('x-request-id', exchange.requestId)
    return Promise.resolve(new Response(decision.body.byteLength === 0 ? null : decision.body, { status: decision.status, headers }))
  }

  const failed = (exchange: Exchange, error: unknown, next: Step): Promise<Response> => {
    const timedOut = error instanceof AuthorizerTimeout
    const reason = timedOut ? 'timeout' : error instanceof DenialTooLarge ? 'answer_too_large' : 'unavailable'
    events.emit('ext_authz_decision', { route, result: onError === 'allow' ? 'error_allowed' : 'error_denied', cached: false, error: reason, url })
    if (onError === 'allow') {
      // Let through unchecked: the access log says so, for whoever audits what got in while the authorizer was down.
      exchange.authz = 'ext_authz:failed_open'
      const edits = (exchange.upstreamHeaderEdits ??= [])
      for (const edit of removeClientCopies) edits.push(edit)
      return next(exchange)
    }
    exchange.authz = 'ext_authz'
    const message = timedOut ? timeoutMessage : 'the authorization service could not be asked'
    return Promise.reject(new GatewayError('authz_unavailable', message, { cause: error, detail: `${url}: ${(error as Error)?.message ?? String(error)}` }))
  }

  return (next: Step) =>
    async function extAuthz(exchange: Exchange): Promise<Response> {
      const key = cacheKey === undefined ? '' : typeof cacheKey === 'string' ? cacheKey : cacheKey(exchange)
      if (key !== '') {
        const remembered = cache!.get(key, context.now())
        if (remembered !== undefined) {
          events.emit('ext_authz_decision', remembered.allowed ? decided.allowedCached : decided.deniedCached)
          return apply(exchange, remembered, next)
        }
      }
      let decision: Decision
      try {
        decision = await ask(exchange)
      } catch (error) {
        // The client left or the route's deadline passed while the authorizer was asked: that is the answer.
        if (exchange.signal.aborted) throw exchange.signal.reason
        return failed(exchange, error, next)
      }
      if (key !== '') cache!.set(key, decision, context.now())
      events.emit('ext_authz_decision', decision.allowed ? decided.allowed : decided.denied)
      return apply(exchange, decision, next)
    }
}

class DenialTooLarge extends Error {}

/** The call to the authorizer, made for one exchange; rejects when there is no usable answer in time. */
function authorizer(policy: ExtAuthzPolicy, send: UpstreamClient): (exchange: Exchange) => Promise<Decision> {
  const { url, timeoutMs, includeBodyBytes, upstreamHeaders } = policy
  const trust = policy.ca === undefined ? {} : { tls: { ca: policy.ca } }
  const forwarded = policy.headers
  const clientHeaders = new Set(policy.clientHeaders)
  const passCookies = clientHeaders.has('set-cookie')
  clientHeaders.delete('set-cookie')

  return async (exchange) => {
    const request = exchange.request
    const headers = new Headers()
    for (const name of forwarded) {
      const value = request.headers.get(name)
      if (value !== null) headers.set(name, value)
    }
    headers.set('x-forwarded-method', request.method)
    headers.set('x-forwarded-uri', exchange.path + exchange.search)
    const host = request.headers.get('host')
    if (host !== null) headers.set('x-forwarded-host', host)
    headers.set('x-forwarded-proto', request.url.startsWith('https:') ? 'https' : 'http')
    headers.set('x-forwarded-for', exchange.client.remoteAddress)
    headers.set('x-request-id', exchange.requestId)
    let body: Uint8Array | null = null
    if (includeBodyBytes > 0 && exchange.body !== null) {
      body = await peekBody(exchange, includeBodyBytes)
      const type = request.headers.get('content-type')
      if (type !== null) headers.set('content-type', type)
    }

    const controller = new AbortController()
    const onTimeout = () => controller.abort(new AuthorizerTimeout(`no answer within ${timeoutMs}ms`))
    const timer = setTimeout(onTimeout, timeoutMs)
    const onGone = () => controller.abort(exchange.signal.reason)
    exchange.signal.addEventListener('abort', onGone, { once: true })
    try {
      const answer = await send({
        url,
        method: body === null ? 'GET' : 'POST',
        headers,
        body,
        signal: controller.signal,
        connectTimeoutMs: timeoutMs,
        bufferUpTo: MAX_DENIAL_BODY,
        ...trust,
      })
      if (answer.status >= 200 && answer.status < 300) {
        await discardBody(answer.body)
        const edits: UpstreamHeaderEdit[] = []
        for (const name of upstreamHeaders) edits.push([name, answer.headers.get(name)])
        return { allowed: true, edits }
      }
      const passed: Array<readonly [string, string]> = []
      for (const [name, value] of answer.headers) if (clientHeaders.has(name)) passed.push([name, value])
      if (passCookies) for (const cookie of answer.headers.getSetCookie()) passed.push(['set-cookie', cookie])
      return { allowed: false, status: answer.status, headers: passed, body: await readCapped(answer) }
    } catch (error) {
      throw controller.signal.aborted ? controller.signal.reason : error
    } finally {
      clearTimeout(timer)
      exchange.signal.removeEventListener('abort', onGone)
    }
  }
}

/** The denial's body, read whole; past MAX_DENIAL_BODY it is no answer to pass on. */
async function readCapped(answer: UpstreamAnswer): Promise<Uint8Array<ArrayBuffer>> {
  const body = answer.body
  if (body === null) return new Uint8Array(0)
  if (body instanceof Uint8Array) return body
  const chunks: Uint8Array[] = []
  let total = 0
  const reader = body.getReader()
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    total += value.byteLength
    if (total > MAX_DENIAL_BODY) {
      await reader.cancel()
      throw new DenialTooLarge(`the authorizer's answer is larger than ${MAX_DENIAL_BODY} bytes`)
    }
    chunks.push(value)
  }
  return concatBytes(chunks, total)
}

declare module '../../core/events.ts' {
  interface GatewayEventMap {
    /**
     * ext_authz's answer for one request: allowed or denied by the authorizer (cached: remembered), or
     * an error (no answer in time, none at all, one too large) that on_error turned into a decision.
     */
    ext_authz_decision: {
      route: string
      result: 'allowed' | 'denied' | 'error_allowed' | 'error_denied'
      cached: boolean
      error?: 'timeout' | 'unavailable' | 'answer_too_large'
      url?: string
    }
  }
}
