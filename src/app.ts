import type { Hono } from 'hono'
import type { Config, ListenerConfig } from './config/types.ts'
import type { Logger } from './log.ts'
import { EventBus } from './events.ts'
import { buildRouteChain, createUpstreams } from './pipeline.ts'
import type { BreakerSnapshot } from './policies/context.ts'
import type { UpstreamRuntime } from './proxy/upstream.ts'
import { createListenerApp, type ListenerEnv, type RouteRuntime } from './listener.ts'
import type { RequestObserver } from './observability/observer.ts'
import { compileRoute } from './proxy/router.ts'
import { StateCarrier } from './state-carrier.ts'
import type { DiscoveryHost, UpstreamClient } from './runtime/types.ts'

/** What the gateway needs from its runtime: the upstream client, and name resolution and files for discovery. */
export type GatewayRuntime = DiscoveryHost & { upstream: UpstreamClient }

export interface GatewayApps {
  listeners: Array<{ listener: ListenerConfig; app: Hono<ListenerEnv> }>
  events: EventBus
  upstreams: ReadonlyMap<string, UpstreamRuntime>
  breakers: ReadonlyMap<string, () => BreakerSnapshot>
}

/** Builds every listener's app from one config; all per-config work happens here, once. */
export function createGateway(
  config: Config,
  runtime: GatewayRuntime,
  logger: Logger,
  observers: readonly RequestObserver[] = [],
  events = new EventBus(),
  carrier = new StateCarrier(),
): GatewayApps {
  const send = runtime.upstream
  const upstreams = createUpstreams(config, { send, events, host: runtime }, carrier)
  const breakers = new Map<string, () => BreakerSnapshot>()
  const deps = { carrier, send, events, upstreams, breakers }
  const listeners = Object.values(config.listeners).map((listener) => {
    const routes = config.routes
      .filter((route) => route.listener === listener.name)
      .map((route) => compileRoute<RouteRuntime>(route, { name: route.name, chain: buildRouteChain(route, deps) }))
    return { listener, app: createListenerApp(routes, observers, logger) }
  })
  return { listeners, events, upstreams, breakers }
}
