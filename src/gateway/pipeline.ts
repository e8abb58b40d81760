import type { Config, RouteConfig } from '../config/types.ts'
import type { EventBus } from '../core/events.ts'
import type { UpstreamClient, UpstreamRequest } from '../core/host.ts'
import type { StateCarrier } from '../core/state-carrier.ts'
import type { WebSocketConnector } from '../core/websocket.ts'
import { chainModules, type AnyPolicyModule, type RoutePolicies } from '../policies/index.ts'
import type { GatewayDeps, RouteContext } from '../policies/policy.ts'
import type { Layer, Step } from '../proxy/exchange.ts'
import { createForwarder } from '../proxy/forward.ts'
import { compileRewrite } from '../proxy/rewrite.ts'
import type { UpstreamConfig } from '../upstream/config.ts'
import { createUpstream, type UpstreamDeps, type UpstreamRuntime } from '../upstream/upstream.ts'

export interface PipelineDeps {
  /** Keeps stateful parts across reloads when their config is unchanged. */
  carrier: StateCarrier
  send: UpstreamClient
  /** Opens the upstream side of WebSockets; without it a handshake gets 502. */
  connectWebSocket?: WebSocketConnector
  events: EventBus
  upstreams: ReadonlyMap<string, UpstreamRuntime>
  /** What every route's policies share: files and environment, JWKS fetches, the Redis store, the state registry. */
  gateway: GatewayDeps
  /** Listeners that terminate TLS: their routes forward X-Forwarded-Proto https. */
  tlsListeners?: ReadonlySet<string>
}

/** The upstream client, told how to meet an upstream that sets TLS keys (`ca`, `cert`/`key`, `server_name`) and which protocol it speaks (`protocol`). */
function trusting(upstream: UpstreamConfig, send: UpstreamClient): UpstreamClient {
  const { tls, protocol } = upstream
  if (protocol !== undefined) return tls === undefined ? (request) => send(over(request, { protocol })) : (request) => send(over(request, { tls, protocol }))
  return tls === undefined ? send : (request) => send(over(request, { tls }))
}

/**
 * The request with these settings, as a new object over it rather than a copy: a request may build
 * its Headers only when asked (forward.ts), and a copy would ask.
 */
function over(request: UpstreamRequest, settings: Pick<UpstreamRequest, 'tls' | 'protocol'>): UpstreamRequest {
  return Object.assign(Object.create(request) as UpstreamRequest, settings)
}

/** Upstreams whose config did not change keep their endpoints' health, ejections and in-flight counts. */
export function createUpstreams(config: Config, deps: UpstreamDeps, carrier: StateCarrier): Map<string, UpstreamRuntime> {
  const upstreams = new Map<string, UpstreamRuntime>()
  for (const upstream of Object.values(config.upstreams)) {
    upstreams.set(upstream.name, carrier.keep(`upstream:${upstream.name}`, upstream, () => createUpstream(upstream, { ...deps, send: trusting(upstream, deps.send) })))
  }
  return upstreams
}

/**
 * A route's chain: every policy the route sets, in the registry's chain order (src/policies/index.ts
 * reads top to bottom), then one try to one endpoint. Policies of "upstream" scope (breaker, fault)
 * are built once for each upstream the route may send to, and the exchange goes to the one a layer
 * above chose (exchange.target, set by split), else to the route's own.
 */
export function buildRouteChain(route: RouteConfig, deps: PipelineDeps): Step {
  const proto = deps.tlsListeners?.has(route.listener) ? 'https' : 'http'
  const rewrite = route.rewrite === undefined ? undefined : compileRewrite(route.rewrite)
  const context: RouteContext = {
    route: { name: route.name, timeoutMs: route.policies.timeoutMs },
    upstream: deps.upstreams.get(route.upstream)!,
    upstreams: deps.upstreams,
    events: deps.events,
    forwardTo: (target) => {
      // A route's own retry policy decides about every failure, connect failures included.
      const retryConnectFailure = target.config.retryConnectFailure && route.policies.retry === undefined
      return createForwarder({ upstream: target, stripPrefix: route.stripPrefix, proto, rewrite, retryConnectFailure }, trusting(target.config, deps.send), deps.connectWebSocket)
    },
    keep: (kind, policy, create) => deps.carrier.keep(`${kind}:${route.name}`, policy, create),
    now: () => performance.now(),
    random: Math.random,
    gateway: deps.gateway,
  }
  const routeLayers = layersOf(route.policies, context, 'route')
  return routeLayers.reduceRight<Step>((next, layer) => layer(next), perUpstream(route, context))
}

/** The layers of one scope the route's policies ask for, outermost first. */
function layersOf(policies: RoutePolicies, context: RouteContext, scope: 'route' | 'upstream'): Layer[] {
  const layers: Layer[] = []
  for (const module of chainModules) {
    if ((module.scope ?? 'route') !== scope) continue
    const value = policies[module.field as keyof RoutePolicies]
    if (value === undefined) continue
    const layer = module.layer(value, context)
    if (layer !== undefined) layers.push(layer)
  }
  return layers
}

/** Every upstream the route's policies may send the exchange to besides its own (split's backends). */
function targetsOf(policies: RoutePolicies): Set<string> {
  const targets = new Set<string>()
  for (const module of chainModules as AnyPolicyModule[]) {
    const value = policies[module.field as keyof RoutePolicies]
    if (value !== undefined && module.targets !== undefined) for (const name of module.targets(value)) targets.add(name)
  }
  return targets
}

/**
 * The end of the chain that belongs to one upstream: the "upstream" scope layers, then forward.
 * Built once for each upstream the route may send to, so a breaker is per route and upstream, and
 * its state is carried across reloads under that upstream's name.
 */
function perUpstream(route: RouteConfig, context: RouteContext): Step {
  const build = (target: RouteContext): Step =>
    layersOf(route.policies, target, 'upstream').reduceRight<Step>((next, layer) => layer(next), target.forwardTo(target.upstream))
  const targets = targetsOf(route.policies)
  if (targets.size === 0) return build(context)
  const steps = new Map<UpstreamRuntime, Step>()
  for (const name of targets) {
    const upstream = context.upstreams.get(name)!
    const keep: RouteContext['keep'] = (kind, policy, create) => context.keep(`${kind}@${name}`, policy, create)
    steps.set(upstream, build({ ...context, upstream, keep }))
  }
  // The layers above only ever choose among these; the route's own upstream is the first of a split.
  const own = steps.get(context.upstream) ?? build(context)
  return function forwardToTarget(exchange) {
    const target = exchange.target
    return (target === undefined ? own : (steps.get(target) ?? own))(exchange)
  }
}
