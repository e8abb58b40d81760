import { Hono } from 'hono'
import { ERROR_STATUS, GatewayError, errorResponse, SANE_REQUEST_ID, tunnelRefusal, type ErrorCode } from '../core/errors.ts'
import { grpcErrorResponse, isGrpcRequest } from '../core/grpc.ts'
import { isWebSocketRequest, sessionOf, upgradeResponse, type WebSocketCloser, type WebSocketSession } from '../core/websocket.ts'
import type { Logger } from '../core/log.ts'
import type { RequestObserver, RequestRecord } from '../observability/observer.ts'
import { observeBody } from '../core/body.ts'
import { SMALL_BODY_BYTES } from '../proxy/forward.ts'
import { Exchange, type Step } from '../proxy/exchange.ts'
import { firstMatch, hostWithoutPort, type CompiledRoute } from './router.ts'
import type { ClientInfo } from '../core/host.ts'
import type { CidrSet } from '../core/cidr.ts'
import { resolveClientAddress } from './client-address.ts'
import { requestProblem } from './hygiene.ts'
import { normalizePath, PathProblem } from './path.ts'
import type { CaseGuard } from './route-case.ts'
import { carryTrailers, trailersOf } from '../core/trailers.ts'
import { CatchAllRouter } from './catch-all-router.ts'

export type ListenerEnv = { Bindings: ClientInfo; Variables: { requestId: string } }

export interface RouteRuntime {
  name: string
  chain: Step
}

/** What the listener checks before routing; built once per config load (src/security/). */
export interface ListenerSecurity {
  /** [gateway] trusted_proxies: peers whose X-Forwarded-For is believed. */
  trustedProxies?: CidrSet
  caseGuard?: CaseGuard
}

interface ListenerContext extends ListenerSecurity {
  routes: CompiledRoute<RouteRuntime>[]
  observers: readonly RequestObserver[]
  logger: Logger
}

/** One listener's Hono app: match a route, run its chain, answer errors as JSON, tell observers. */
export function createListenerApp(
  routes: CompiledRoute<RouteRuntime>[],
  observers: readonly RequestObserver[],
  logger: Logger,
  security: ListenerSecurity = {},
): Hono<ListenerEnv> {
  const context: ListenerContext = { routes, observers, logger, ...security }
  const app = new Hono<ListenerEnv>({ router: new CatchAllRouter() })
  // One handler and no middleware: Hono then calls it directly, without composing a chain.
  app.all('*', (c) => handle(c.req.raw, c.env, requestIdOf(c.req.raw), context))
  app.onError((error, c) => {
    const id = requestIdOf(c.req.raw)
    logger.log('error', 'unexpected error', { request_id: id, error: String(error), stack: (error as Error)?.stack })
    return errorAnswer(c.req.raw, 'internal_error', 'the gateway failed to handle this request', id)
  })
  return app
}

async function handle(request: Request, peer: ClientInfo, id: string, context: ListenerContext): Promise<Response> {
  const startedAt = performance.now()
  const url = splitUrl(request.url)
  if (request.method === 'CONNECT') {
    const response = tunnelRefusal(id)
    notify(context, request, peer, id, url.pathname, startedAt, undefined, response.status, 'method_not_allowed', 0)
    return response
  }
  // Hygiene and normalization come before routing: what routes and policies match is what goes upstream.
  const problem = requestProblem(request.method, request.headers)
  const path = problem === undefined ? normalizePath(url.pathname) : undefined
  if (path === undefined || path instanceof PathProblem) {
    const response = errorAnswer(request, 'bad_request', `refused: ${problem ?? path!.reason}`, id)
    notify(context, request, peer, id, url.pathname, startedAt, undefined, response.status, 'bad_request', 0, grpcStatusOf(response))
    return response
  }
  const forwardedFor = context.trustedProxies === undefined ? null : request.headers.get('x-forwarded-for')
  const address = resolveClientAddress(peer.remoteAddress, forwardedFor, context.trustedProxies)
  const client = address === peer.remoteAddress ? peer : { remoteAddress: address }
  const facts = { method: request.method, host: hostWithoutPort(request.headers.get('host')), path, headers: request.headers }
  const route = firstMatch(context.routes, facts)
  const folded = context.caseGuard?.(facts, route?.name)
  if (folded !== undefined) {
    const message = `refused: ${path} matches route ${folded} when case is ignored, but route ${route?.name ?? '(none)'} as written`
    const response = errorAnswer(request, 'bad_request', message, id)
    notify(context, request, client, id, path, startedAt, undefined, response.status, 'bad_request', 0, grpcStatusOf(response))
    return response
  }
  if (route === undefined) {
    const response = errorAnswer(request, 'no_route', `no route for ${request.method} ${path}`, id)
    notify(context, request, client, id, path, startedAt, undefined, response.status, 'no_route', 0, grpcStatusOf(response))
    return response
  }
  const exchange = new Exchange(request, client, id, path, url.search, startedAt)
  exchange.route = route.name
  exchange.upgrade = isWebSocketRequest(request.method, request.headers)
  // A believed X-Forwarded-For goes on as received plus the proxy that sent it, not plus the client.
  if (forwardedFor !== null && client !== peer && address !== peer.remoteAddress.replace(/^::ffff:/, '')) {
    exchange.setUpstreamHeader('x-forwarded-for', `${forwardedFor}, ${peer.remoteAddress}`)
  }
  for (const observer of context.observers) observer.onRequest?.(exchange)
  exchange.watchClient(request, peer)
  let response: Response
  try {
    response = await route.chain(exchange)
  } catch (error) {
    exchange.finish()
    // A layer above the forwarder failed after the upstream accepted a WebSocket: nobody will bridge it.
    if (exchange.session !== undefined) abandon(exchange.session, 'gateway')
    if (!(error instanceof GatewayError)) throw error
    if (error.status >= 500 || error.code === 'client_closed') {
      context.logger.log('warn', error.message, {
        code: error.code,
        status: error.status,
        route: route.name,
        method: request.method,
        path,
        endpoint: exchange.endpoint,
        // The client's answer is generic; what failed where (address, the runtime's words) is here.
        ...(error.detail === undefined ? {} : { detail: error.detail }),
        request_id: id,
        duration_ms: Math.round(performance.now() - startedAt),
      })
    }
    const answer = errorAnswer(request, error.code, error.message, id, error.headers)
    notify(context, request, client, id, path, startedAt, exchange, answer.status, error.code, 0, grpcStatusOf(answer))
    return answer
  }
  if (exchange.session !== undefined) return switchingProtocols(exchange, response, context, client, path)
  const status = response.status
  const code = (response.headers.get('x-pillion-error') ?? undefined) as ErrorCode | undefined
  // A layer's own JSON error answer (a fault, a quota): a gRPC client gets it the gRPC way.
  if (code !== undefined && code in ERROR_STATUS && response.headers.get('grpc-status') === null && isGrpcRequest(request.headers)) {
    void response.body?.cancel().catch(() => {})
    exchange.finish()
    const answer = grpcErrorResponse(code, `${code}: the gateway answered ${status}`, id, headersOf(response))
    notify(context, request, client, id, path, startedAt, exchange, answer.status, code, 0, grpcStatusOf(answer))
    return answer
  }
  // Checked before response.body: on Node that getter turns a light Response into a full undici one.
  if (exchange.buffered?.response === response) {
    exchange.finish()
    notifyProxied(context, request, client, id, path, startedAt, exchange, status, code, exchange.buffered.bytes, response)
    return response
  }
  if (response.body === null) {
    exchange.finish()
    notifyProxied(context, request, client, id, path, startedAt, exchange, status, code, 0, response)
    return response
  }
  const declared = response.headers.get('content-length')
  if (declared !== null && Number(declared) <= SMALL_BODY_BYTES) {
    // A small body of known size is read whole: no stream wrapper, and its end is known at once.
    const bytes = await readSmallBody(response)
    if (bytes !== undefined) {
      exchange.finish()
      notifyProxied(context, request, client, id, path, startedAt, exchange, status, code, bytes.byteLength, response)
      return carryTrailers(response, new Response(bytes, { status, statusText: response.statusText, headers: response.headers }))
    }
    const cut = exchange.signal.reason as GatewayError | undefined
    exchange.finish()
    notify(context, request, client, id, path, startedAt, exchange, status, cut?.code ?? code, 0)
    return errorAnswer(request, cut?.code ?? 'upstream_unavailable', cut?.message ?? 'the upstream response body failed', id)
  }
  const body = observeBody(response.body, (bytes, error) => {
    exchange.finish()
    const cut = error !== undefined && exchange.signal.aborted ? (exchange.signal.reason as GatewayError) : undefined
    notifyProxied(context, request, client, id, path, startedAt, exchange, status, cut?.code ?? code, bytes, response)
  })
  return carryTrailers(response, new Response(body, { status, statusText: response.statusText, headers: response.headers }))
}

function notify(
  context: ListenerContext,
  request: Request,
  client: ClientInfo,
  requestId: string,
  path: string,
  startedAt: number,
  exchange: Exchange | undefined,
  status: number,
  code: ErrorCode | undefined,
  bytesOut: number,
  grpcStatus?: number,
): void {
  if (context.observers.length === 0) return
  const durationMs = performance.now() - startedAt
  const record: RequestRecord = {
    requestId,
    route: exchange?.route,
    method: request.method,
    path,
    status,
    code,
    startedAt: performance.timeOrigin + startedAt,
    durationMs,
    bytesOut,
    clientAddress: client.remoteAddress,
    exchange,
    request,
  }
  if (grpcStatus !== undefined) record.grpcStatus = grpcStatus
  for (const observer of context.observers) observer.onResponse(record)
}

/**
 * notify() for an upstream's answer. One with trailers (an HTTP/2 upstream's) is told once they are
 * in, with the grpc-status it ended with: in its trailers, or in its headers when trailers-only.
 */
function notifyProxied(
  context: ListenerContext,
  request: Request,
  client: ClientInfo,
  requestId: string,
  path: string,
  startedAt: number,
  exchange: Exchange,
  status: number,
  code: ErrorCode | undefined,
  bytesOut: number,
  response: Response,
): void {
  const trailers = trailersOf(response)
  if (trailers === undefined) return notify(context, request, client, requestId, path, startedAt, exchange, status, code, bytesOut)
  void trailers.then((fields) => {
    const grpcStatus = grpcStatusIn(fields.get('grpc-status') ?? response.headers.get('grpc-status'))
    notify(context, request, client, requestId, path, startedAt, exchange, status, code, bytesOut, grpcStatus)
  })
}

function grpcStatusOf(answer: Response): number | undefined {
  return grpcStatusIn(answer.headers.get('grpc-status'))
}

function grpcStatusIn(value: string | null): number | undefined {
  if (value === null) return undefined
  const status = Number(value)
  return Number.isInteger(status) ? status : undefined
}


/** The whole body, or undefined when it failed (the exchange's abort reason, if any, says why). */
async function readSmallBody(response: Response): Promise<ArrayBuffer | undefined> {
  try {
    return await response.arrayBuffer()
  } catch {
    return undefined
  }
}

/** The client's x-request-id when it is sane (the rule of Hono's requestId middleware), else a new one. */
/**
 * The answer that becomes the client's 101: the adapter upgrades the client and bridges it to the
 * upstream the forwarder opened. The exchange (route timeout, bulkhead slot) ends here; the
 * connection's own life is bounded by [routes.websocket] and ends with a websocket_closed event.
 */
function switchingProtocols(exchange: Exchange, response: Response, context: ListenerContext, client: ClientInfo, path: string): Response {
  const session = exchange.session!
  exchange.finish()
  notify(context, exchange.request, client, exchange.requestId, path, exchange.startedAt, exchange, 101, undefined, 0)
  // A layer may have answered with a Response of its own (headers copied): the session goes with the final one.
  return sessionOf(response) === session ? response : upgradeResponse(session, new Headers(response.headers))
}

function abandon(session: WebSocketSession, by: WebSocketCloser): void {
  session.upstream.abandon()
  session.closed({ code: 1006, reason: '', by, messagesIn: 0, bytesIn: 0, messagesOut: 0, bytesOut: 0 })
}

/** The gateway's error answer: JSON, or trailers-only with a grpc-status when the client speaks gRPC. */
function errorAnswer(request: Request, code: ErrorCode, message: string, id: string, headers?: Record<string, string>): Response {
  return isGrpcRequest(request.headers) ? grpcErrorResponse(code, message, id, headers) : errorResponse(code, message, id, headers)
}

/** A layer's answer headers as a record, but for those of its JSON body. */
function headersOf(response: Response): Record<string, string> {
  const headers: Record<string, string> = {}
  for (const [name, value] of response.headers) if (name !== 'content-type' && name !== 'content-length') headers[name] = value
  return headers
}

function requestIdOf(request: Request): string {
  const given = request.headers.get('x-request-id')
  return given !== null && SANE_REQUEST_ID.test(given) ? given : crypto.randomUUID()
}

/**
 * Path and query of the request URL by slicing: the runtime has parsed and normalized it already.
 * Bun hands over a bare path for an HTTP/1.0 request without Host.
 */
function splitUrl(href: string): { pathname: string; search: string } {
  const pathStart = href.startsWith('/') ? 0 : href.indexOf('/', href.indexOf('://') + 3)
  if (pathStart === -1) return { pathname: '/', search: '' }
  const hash = href.indexOf('#', pathStart)
  const end = hash === -1 ? href.length : hash
  const queryStart = href.indexOf('?', pathStart)
  const pathEnd = queryStart === -1 || queryStart > end ? end : queryStart
  let pathname = href.slice(pathStart, pathEnd)
  // Node and Bun hand over a URL the WHATWG parser already normalized; Deno hands over the raw
  // target. Dot segments get the WHATWG treatment on every runtime, before our own normalization.
  if (DOT_SEGMENTS.test(pathname)) {
    // Parsed as a whole URL, never as a relative reference: "//host/.." must stay a path.
    // Only the path is parsed: Deno passes the Host header into its URL unchecked ("http://a b/").
    pathname = new URL(`http://localhost${pathname}`).pathname
  }
  return { pathname, search: href.slice(pathEnd, end) }
}

const DOT_SEGMENTS = /\/\.|\\|%2e/i
