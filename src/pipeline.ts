import type { Config, RouteConfig } from './config/types.ts'
import type { EventBus } from './events.ts'
import type { Layer, Step } from './proxy/exchange.ts'
import { createForwarder } from './proxy/forward.ts'
import { createUpstream, type UpstreamDeps, type UpstreamRuntime } from './proxy/upstream.ts'
import { bulkheadLayer } from './policies/bulkhead.ts'
import { circuitBreakerLayer } from './policies/circuit-breaker.ts'
import type { BreakerSnapshot, RouteContext } from './policies/context.ts'
import { fallbackLayer } from './policies/fallback.ts'
import { retryLayer } from './policies/retry.ts'
import { timeoutLayer } from './policies/timeout.ts'
import type { UpstreamClient } from './runtime/types.ts'
import type { StateCarrier } from './state-carrier.ts'

export interface PipelineDeps {
  /** Keeps stateful parts across reloads when their config is unchanged. */
  carrier: StateCarrier
  send: UpstreamClient
  events: EventBus
  upstreams: ReadonlyMap<string, UpstreamRuntime>
  breakers: Map<string, () => BreakerSnapshot>
}

/** Upstreams whose config did not change keep their endpoints' health, ejections and in-flight counts. */
export function createUpstreams(config: Config, deps: UpstreamDeps, carrier: StateCarrier): Map<string, UpstreamRuntime> {
  const upstreams = new Map<string, UpstreamRuntime>()
  for (const upstream of Object.values(config.upstreams)) {
    upstreams.set(upstream.name, carrier.keep(`upstream:${upstream.name}`, upstream, () => createUpstream(upstream, deps)))
  }
  return upstreams
}

/**
 * A route's chain, outermost first. The order is the contract; read it here, top to bottom:
 *
 *   cors             answers preflights; adds CORS headers to every answer
 *   ip               allow/deny by client address
 *   limits           methods, body size (while streaming), header and URL sizes
 *   jwt, api_key     who is calling; forwards claims / consumer upstream
 *   rate_limit       local and global (Redis) quotas, keyed by client, header, claim or route
 *   split            picks the upstream version (weights, sticky hashing)
 *   mirror           a shadow copy to another upstream, never waited on
 *   fallback         answers when everything below failed or the breaker is open
 *   timeout          the whole request's deadline, queueing and retries included
 *   bulkhead         caps concurrent requests on the route, with a bounded queue
 *   retry            tries again, elsewhere, within budget and deadline; per-try timeouts
 *   circuit breaker  counts each try; open means fail fast without calling the upstream
 *   fault            injected delays and aborts, seen by retries and breakers like real ones
 *   forward          one try to one endpoint
 */
export function buildRouteChain(route: RouteConfig, deps: PipelineDeps): Step {
  const upstream = deps.upstreams.get(route.upstream)!
  const forwardTo = (target: UpstreamRuntime) =>
    createForwarder({ upstream: target, stripPrefix: route.stripPrefix, proto: 'http' }, deps.send)
  const context: RouteContext = {
    route,
    upstream,
    upstreams: deps.upstreams,
    events: deps.events,
    breakers: deps.breakers,
    forwardTo,
    keep: (kind, policy, create) => deps.carrier.keep(`${kind}:${route.name}`, policy, create),
    now: () => performance.now(),
    random: Math.random,
  }
  const { fallback, timeoutMs, bulkhead, retry, circuitBreaker } = route.policies
  const layers: Layer[] = []
  if (fallback) layers.push(fallbackLayer(fallback, context))
  if (timeoutMs > 0) layers.push(timeoutLayer(timeoutMs))
  if (bulkhead) layers.push(bulkheadLayer(bulkhead, context))
  if (retry) layers.push(retryLayer(retry, context))
  if (circuitBreaker) layers.push(circuitBreakerLayer(circuitBreaker, context))
  return layers.reduceRight<Step>((next, layer) => layer(next), forwardTo(upstream))
}
