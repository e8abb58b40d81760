import type { Config, RouteConfig, UpstreamConfig } from '../config/types.ts'
import type { EventBus } from '../core/events.ts'
import type { Layer, Step } from '../proxy/exchange.ts'
import { createForwarder } from '../proxy/forward.ts'
import { createUpstream, type UpstreamDeps, type UpstreamRuntime } from '../upstream/upstream.ts'
import { bulkheadLayer, type BulkheadSnapshot } from '../policies/bulkhead/index.ts'
import { circuitBreakerLayer } from '../policies/circuit-breaker/index.ts'
import type { BreakerSnapshot, RouteContext } from '../policies/policy.ts'
import { fallbackLayer } from '../policies/fallback/index.ts'
import { faultLayer } from '../policies/fault/index.ts'
import { mirrorLayer } from '../policies/mirror/index.ts'
import { rateLimitLayer } from '../policies/rate-limit/index.ts'
import type { GlobalLimitStore } from '../policies/rate-limit/global-store.ts'
import { retryLayer } from '../policies/retry/index.ts'
import { splitLayer } from '../policies/split/index.ts'
import { timeoutLayer } from '../policies/timeout/index.ts'
import type { UpstreamClient } from '../core/host.ts'
import { apiKeyLayer } from '../policies/api-key/index.ts'
import { corsLayer } from '../policies/cors/index.ts'
import { ipLayer } from '../policies/ip/index.ts'
import { jwtLayer } from '../policies/jwt/index.ts'
import { limitsLayer } from '../policies/limits/index.ts'
import { responseHeadersLayer } from '../policies/response-headers/index.ts'
import type { SecurityDeps } from '../policies/shared/security-deps.ts'
import type { StateCarrier } from '../core/state-carrier.ts'

export interface PipelineDeps {
  /** Files, environment and shared caches for jwt and api_key. */
  security?: SecurityDeps
  /** Listeners that terminate TLS: their routes forward X-Forwarded-Proto https. */
  tlsListeners?: ReadonlySet<string>
  /** Keeps stateful parts across reloads when their config is unchanged. */
  carrier: StateCarrier
  send: UpstreamClient
  events: EventBus
  upstreams: ReadonlyMap<string, UpstreamRuntime>
  breakers: Map<string, () => BreakerSnapshot>
  /** The gateway's Redis store, when [redis] is set. */
  globalLimits?: GlobalLimitStore
  /** Where bulkheads register, by route, for metrics and the dashboard. */
  bulkheads?: Map<string, () => BulkheadSnapshot>
}

/** Upstreams whose config did not change keep their endpoints' health, ejections and in-flight counts. */
/** The upstream client, told which CA to trust for an upstream that names one (`ca`). */
function trusting(upstream: UpstreamConfig, send: UpstreamClient): UpstreamClient {
  const ca = upstream.ca
  return ca === undefined ? send : (request) => send({ ...request, ca })
}

export function createUpstreams(config: Config, deps: UpstreamDeps, carrier: StateCarrier): Map<string, UpstreamRuntime> {
  const upstreams = new Map<string, UpstreamRuntime>()
  for (const upstream of Object.values(config.upstreams)) {
    upstreams.set(upstream.name, carrier.keep(`upstream:${upstream.name}`, upstream, () => createUpstream(upstream, { ...deps, send: trusting(upstream, deps.send) })))
  }
  return upstreams
}

/**
 * A route's chain, outermost first. The order is the contract; read it here, top to bottom:
 *
 *   cors             answers preflights; adds CORS headers to every answer
 *   response headers secure_headers added, strip_response_headers removed, error answers included
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
  const proto = deps.tlsListeners?.has(route.listener) ? 'https' : 'http'
  const forwardTo = (target: UpstreamRuntime) =>
    createForwarder({ upstream: target, stripPrefix: route.stripPrefix, proto }, trusting(target.config, deps.send))
  const context: RouteContext = {
    route,
    upstream,
    upstreams: deps.upstreams,
    events: deps.events,
    breakers: deps.breakers,
    bulkheads: deps.bulkheads,
    forwardTo,
    keep: (kind, policy, create) => deps.carrier.keep(`${kind}:${route.name}`, policy, create),
    now: () => performance.now(),
    random: Math.random,
  }
  const { fallback, timeoutMs, bulkhead, retry } = route.policies
  const layers: Layer[] = []
  const { cors, secureHeaders, stripResponseHeaders, ip, limits, jwt, apiKey } = route.policies
  if (cors) layers.push(corsLayer(cors, context))
  if (secureHeaders || stripResponseHeaders?.length) layers.push(responseHeadersLayer(secureHeaders, stripResponseHeaders))
  if (ip) layers.push(ipLayer(ip, context))
  if (limits) layers.push(limitsLayer(limits, context))
  if (jwt) layers.push(jwtLayer(jwt, context, securityDeps(deps)))
  if (apiKey) layers.push(apiKeyLayer(apiKey, context, securityDeps(deps)))
  if (route.policies.rateLimits?.length) layers.push(rateLimitLayer(route.policies.rateLimits, context, deps.globalLimits))
  if (route.split) layers.push(splitLayer(route.split, context))
  if (route.policies.mirror) layers.push(mirrorLayer(route.policies.mirror, context))
  if (fallback) layers.push(fallbackLayer(fallback, context))
  if (timeoutMs > 0) layers.push(timeoutLayer(timeoutMs))
  if (bulkhead) {
    const layer = bulkheadLayer(bulkhead, context)
    deps.bulkheads?.set(route.name, layer.snapshot)
    layers.push(layer)
  }
  if (retry) layers.push(retryLayer(retry, context))
  return layers.reduceRight<Step>((next, layer) => layer(next), perUpstream(route, context))
}

function securityDeps(deps: PipelineDeps): SecurityDeps {
  if (deps.security === undefined) throw new Error('jwt and api_key need PipelineDeps.security')
  return deps.security
}

/**
 * The end of the chain that belongs to one upstream: circuit breaker, fault, forward. A split route
 * builds it once for each upstream it may choose (so a breaker is per route and upstream, and its
 * state is carried across reloads under that upstream's name) and goes where the split layer set
 * exchange.target; any other route builds it once, for its upstream.
 */
function perUpstream(route: RouteConfig, context: RouteContext): Step {
  const { circuitBreaker, fault } = route.policies
  const build = (target: RouteContext): Step => {
    const layers: Layer[] = []
    if (circuitBreaker) layers.push(circuitBreakerLayer(circuitBreaker, target))
    if (fault) layers.push(faultLayer(fault, target))
    return layers.reduceRight<Step>((next, layer) => layer(next), target.forwardTo(target.upstream))
  }
  if (route.split === undefined) return build(context)
  const steps = new Map<UpstreamRuntime, Step>()
  for (const { upstream: name } of route.split.backends) {
    const upstream = context.upstreams.get(name)!
    const keep: RouteContext['keep'] = (kind, policy, create) => context.keep(`${kind}@${name}`, policy, create)
    steps.set(upstream, build({ ...context, upstream, keep }))
  }
  // The split layer only ever chooses among these; the first is the route's upstream.
  const first = steps.get(context.upstream)!
  return function forwardToTarget(exchange) {
    const target = exchange.target
    return (target === undefined ? first : (steps.get(target) ?? first))(exchange)
  }
}
