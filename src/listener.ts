import { Hono } from 'hono'
import { requestId } from 'hono/request-id'
import { GatewayError, errorResponse, type ErrorCode } from './errors.ts'
import type { Logger } from './log.ts'
import type { RequestObserver, RequestRecord } from './observability/observer.ts'
import { observeBody } from './proxy/body.ts'
import { Exchange, type Step } from './proxy/exchange.ts'
import { firstMatch, hostWithoutPort, type CompiledRoute } from './proxy/router.ts'
import type { ClientInfo } from './runtime/types.ts'

export type ListenerEnv = { Bindings: ClientInfo; Variables: { requestId: string } }

export interface RouteRuntime {
  name: string
  chain: Step
}

interface ListenerContext {
  routes: CompiledRoute<RouteRuntime>[]
  observers: readonly RequestObserver[]
  logger: Logger
}

/** One listener's Hono app: match a route, run its chain, answer errors as JSON, tell observers. */
export function createListenerApp(
  routes: CompiledRoute<RouteRuntime>[],
  observers: readonly RequestObserver[],
  logger: Logger,
): Hono<ListenerEnv> {
  const context: ListenerContext = { routes, observers, logger }
  const app = new Hono<ListenerEnv>()
  app.use(requestId())
  app.all('*', (c) => handle(c.req.raw, c.env, c.get('requestId'), context))
  app.onError((error, c) => {
    const id = c.get('requestId') ?? crypto.randomUUID()
    logger.log('error', 'unexpected error', { request_id: id, error: String(error), stack: (error as Error)?.stack })
    return errorResponse('internal_error', 'the gateway failed to handle this request', id)
  })
  return app
}

async function handle(request: Request, client: ClientInfo, id: string, context: ListenerContext): Promise<Response> {
  const startedAt = performance.now()
  const url = new URL(request.url)
  const route = firstMatch(context.routes, {
    method: request.method,
    host: hostWithoutPort(request.headers.get('host')),
    path: url.pathname,
    headers: request.headers,
  })
  if (route === undefined) {
    const response = errorResponse('no_route', `no route for ${request.method} ${url.pathname}`, id)
    notify(context, request, client, id, url.pathname, startedAt, undefined, response.status, 'no_route', 0)
    return response
  }
  const exchange = new Exchange(request, client, id, url.pathname, url.search, startedAt)
  exchange.route = route.name
  for (const observer of context.observers) observer.onRequest?.(exchange)
  const clientSignal = request.signal
  const onClientGone = () => exchange.controller.abort(new GatewayError('client_closed', 'the client closed the connection'))
  clientSignal.addEventListener('abort', onClientGone, { once: true })
  exchange.onFinish(() => clientSignal.removeEventListener('abort', onClientGone))
  let response: Response
  try {
    response = await route.chain(exchange)
  } catch (error) {
    exchange.finish()
    if (!(error instanceof GatewayError)) throw error
    if (error.status >= 500 || error.code === 'client_closed') {
      context.logger.log('warn', error.message, {
        code: error.code,
        status: error.status,
        route: route.name,
        method: request.method,
        path: url.pathname,
        endpoint: exchange.endpoint,
        request_id: id,
        duration_ms: Math.round(performance.now() - startedAt),
      })
    }
    const answer = errorResponse(error.code, error.message, id, error.headers)
    notify(context, request, client, id, url.pathname, startedAt, exchange, error.status, error.code, 0)
    return answer
  }
  const status = response.status
  const code = (response.headers.get('x-pillion-error') ?? undefined) as ErrorCode | undefined
  if (response.body === null) {
    exchange.finish()
    notify(context, request, client, id, url.pathname, startedAt, exchange, status, code, 0)
    return response
  }
  const body = observeBody(response.body, (bytes, error) => {
    exchange.finish()
    const cut = error !== undefined && exchange.signal.aborted ? (exchange.signal.reason as GatewayError) : undefined
    notify(context, request, client, id, url.pathname, startedAt, exchange, status, cut?.code ?? code, bytes)
  })
  return new Response(body, { status, statusText: response.statusText, headers: response.headers })
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
  }
  for (const observer of context.observers) observer.onResponse(record)
}
