import type { Config, RouteConfig } from './config/types.ts'
import { createBalancer, type Balancer } from './proxy/balancer.ts'
import type { Layer, Step } from './proxy/exchange.ts'
import { createForwarder } from './proxy/forward.ts'
import { timeoutLayer } from './policies/timeout.ts'
import type { UpstreamClient } from './runtime/types.ts'

export interface PipelineDeps {
  send: UpstreamClient
  balancers: Map<string, Balancer>
}

export function createBalancers(config: Config): Map<string, Balancer> {
  const balancers = new Map<string, Balancer>()
  for (const upstream of Object.values(config.upstreams)) {
    balancers.set(upstream.name, createBalancer(upstream.balance, upstream.endpoints))
  }
  return balancers
}

/**
 * A route's chain, outermost first. The order is the contract: read it here, top to bottom.
 *   timeout (whole request) -> forward (one call to one endpoint)
 */
export function buildRouteChain(config: Config, route: RouteConfig, deps: PipelineDeps): Step {
  const upstream = config.upstreams[route.upstream]!
  const forward = createForwarder(
    { upstream, balancer: deps.balancers.get(upstream.name)!, stripPrefix: route.stripPrefix, proto: 'http' },
    deps.send,
  )
  const layers: Layer[] = []
  if (route.policies.timeoutMs > 0) layers.push(timeoutLayer(route.policies.timeoutMs))
  return layers.reduceRight<Step>((next, layer) => layer(next), forward)
}
