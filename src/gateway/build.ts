import type { Hono } from 'hono'
import type { Config, ListenerConfig } from '../config/types.ts'
import type { Logger } from '../core/log.ts'
import { EventBus } from '../core/events.ts'
import { buildRouteChain, createUpstreams } from './pipeline.ts'
import type { UpstreamRuntime } from '../upstream/upstream.ts'
import { createListenerApp, type ListenerEnv, type RouteRuntime } from '../listener/request-handler.ts'
import { AuditLog } from '../observability/audit.ts'
import type { RequestObserver } from '../observability/observer.ts'
import { compileRoute } from '../listener/router.ts'
import type { WebSocketConnector } from '../core/websocket.ts'
import type { GatewayDeps } from '../policies/policy.ts'
import { PolicyStates } from '../core/policy-states.ts'
import { listenerSecurity } from './listener-setup.ts'
import { GlobalLimitStore, type OpenRateLimitStore } from '../policies/rate-limit/global-store.ts'
import { StateCarrier } from '../core/state-carrier.ts'
import type { DiscoveryHost, UpstreamClient } from '../core/host.ts'

/** What the gateway needs from its runtime: the upstream client, and name resolution and files for discovery. */
export type GatewayRuntime = DiscoveryHost & { upstream: UpstreamClient; redisStore?: OpenRateLimitStore; websocket?: WebSocketConnector }

export interface GatewayApps {
  listeners: Array<{ listener: ListenerConfig; app: Hono<ListenerEnv> }>
  events: EventBus
  upstreams: ReadonlyMap<string, UpstreamRuntime>
  /** What the policies' layers registered for the admin API, metrics and dashboard (breakers, bulkheads). */
  states: PolicyStates
  /** The [audit] trail; carried across reloads while [audit] is unchanged. */
  audit?: AuditLog
  /** The [redis] store for global rate limits; carried across reloads while [redis] is unchanged. */
  globalLimits?: GlobalLimitStore
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
  const states = new PolicyStates()
  const redis = config.redis
  const globalLimits =
    redis && carrier.keep('redis', { redis, service: config.gateway.service }, () => new GlobalLimitStore(redisOpener(runtime), redis, config.gateway.service, events))
  const gateway: GatewayDeps = { host: runtime, keep: (key, policy, create) => carrier.keep(`security:${key}`, policy, create), states, globalLimits, send }
  const tlsListeners = new Set(Object.values(config.listeners).flatMap((listener) => (listener.tls ? [listener.name] : [])))
  const deps = { carrier, send, connectWebSocket: runtime.websocket, events, upstreams, gateway, tlsListeners }
  const auditConfig = config.audit
  const service = config.gateway.service
  const audit = auditConfig && carrier.keep('audit', { auditConfig, service }, () => new AuditLog(auditConfig, { send, events, service }))
  const routeObservers = audit === undefined ? observers : [...observers, audit]
  const listeners = Object.values(config.listeners).map((listener) => {
    const routes = config.routes
      .filter((route) => route.listener === listener.name)
      .map((route) => compileRoute<RouteRuntime>(route, { name: route.name, chain: buildRouteChain(route, deps) }))
    return { listener, app: createListenerApp(routes, routeObservers, logger, listenerSecurity(config, listener.name)) }
  })
  return { listeners, events, upstreams, states, audit, globalLimits }
}

function redisOpener(runtime: GatewayRuntime): OpenRateLimitStore {
  if (runtime.redisStore === undefined) throw new Error('[redis] is set but this runtime has no Redis client')
  return runtime.redisStore
}
