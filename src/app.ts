import { Hono } from 'hono'
import { requestId } from 'hono/request-id'
import type { Config, ListenerConfig } from './config/types.ts'
import { GatewayError, errorResponse } from './errors.ts'
import type { Logger } from './log.ts'
import { EventBus } from './events.ts'
import { buildRouteChain, createUpstreams } from './pipeline.ts'
import type { BreakerSnapshot } from './policies/context.ts'
import type { UpstreamRuntime } from './proxy/upstream.ts'
import { observeBody } from './proxy/body.ts'
import { Exchange, type Step } from './proxy/exchange.ts'
import { compileRoute, firstMatch, hostWithoutPort, type CompiledRoute } from './proxy/router.ts'
import type { ClientInfo, DiscoveryHost, UpstreamClient } from './runtime/types.ts'

/** What the gateway needs from its runtime: the upstream client, and name resolution and files for discovery. */
export type GatewayRuntime = DiscoveryHost & { upstream: UpstreamClient }

type GatewayEnv = { Bindings: ClientInfo; Variables: { requestId: string } }

export interface RouteRuntime {
  name: string
  chain: Step
}

export interface GatewayApps {
  listeners: Array<{ listener: ListenerConfig; app: Hono<GatewayEnv> }>
  events: EventBus
  upstreams: ReadonlyMap<string, UpstreamRuntime>
  breakers: ReadonlyMap<string, () => BreakerSnapshot>
}

/** Builds every listener's app from one config; all per-config work happens here, once. */
export function createGateway(config: Config, runtime: GatewayRuntime, logger: Logger, events = new EventBus()): GatewayApps {
  const send = runtime.upstream
  const upstreams = createUpstreams(config, { send, events, host: runtime })
  const breakers = new Map<string, () => BreakerSnapshot>()
  const deps = { send, events, upstreams, breakers }
  const listeners = Object.values(config.listeners).map((listener) => {
    const routes = config.routes
      .filter((route) => route.listener === listener.name)
      .map((route) => compileRoute<RouteRuntime>(route, { name: route.name, chain: buildRouteChain(route, deps) }))
    return { listener, app: createListenerApp(routes, logger) }
  })
  return { listeners, events, upstreams, breakers }
}

function createListenerApp(routes: CompiledRoute<RouteRuntime>[], logger: Logger): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>()
  app.use(requestId())
  app.all('*', (c) => handle(c.req.raw, c.env, c.get('requestId'), routes, logger))
  app.onError((error, c) => {
    const id = c.get('requestId') ?? crypto.randomUUID()
    logger.log('error', 'unexpected error', { request_id: id, error: String(error), stack: (error as Error)?.stack })
    return errorResponse('internal_error', 'the gateway failed to handle this request', id)
  })
  return app
}

async function handle(
  request: Request,
  client: ClientInfo,
  id: string,
  routes: CompiledRoute<RouteRuntime>[],
  logger: Logger,
): Promise<Response> {
  const url = new URL(request.url)
  const route = firstMatch(routes, {
    method: request.method,
    host: hostWithoutPort(request.headers.get('host')),
    path: url.pathname,
    headers: request.headers,
  })
  if (route === undefined) {
    return errorResponse('no_route', `no route for ${request.method} ${url.pathname}`, id)
  }
  const exchange = new Exchange(request, client, id, url.pathname, url.search, performance.now())
  const clientSignal = request.signal
  const onClientGone = () =>
    exchange.controller.abort(new GatewayError('client_closed', 'the client closed the connection'))
  clientSignal.addEventListener('abort', onClientGone, { once: true })
  exchange.onFinish(() => clientSignal.removeEventListener('abort', onClientGone))
  try {
    const response = await route.chain(exchange)
    if (response.body === null) {
      exchange.finish()
      return response
    }
    const body = observeBody(response.body, () => exchange.finish())
    return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers })
  } catch (error) {
    exchange.finish()
    if (!(error instanceof GatewayError)) throw error
    logger.log('warn', error.message, {
      code: error.code,
      status: error.status,
      route: route.name,
      method: request.method,
      path: url.pathname,
      endpoint: exchange.endpoint,
      request_id: id,
      duration_ms: Math.round(performance.now() - exchange.startedAt),
    })
    return errorResponse(error.code, error.message, id, error.headers)
  }
}
