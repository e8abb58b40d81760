import type { PolicyStateMap } from '../core/policy-states.ts'
import type { UpstreamSnapshot } from '../upstream/upstream.ts'
import type { GatewayMetrics } from './metrics.ts'
import { LATENCY_BUCKETS, quantile, type HistogramChild } from './registry.ts'

export interface RouteStats {
  route: string
  /** pillion_requests_total summed over method and status. */
  requests: number
  byClass: Record<string, number>
  inFlight: number
  /** Non-cumulative counts per LATENCY_BUCKETS bucket (+Inf last), summed over status classes. */
  latency: number[]
  /** Since start, in seconds, from the histogram; null without requests. */
  p50: number | null
  p95: number | null
  p99: number | null
}

/** What the dashboard polls: the same numbers /metrics reports, shaped for a page. */
export interface DashboardStats {
  time: number
  buckets: readonly number[]
  routes: RouteStats[]
  errors: Array<{ route: string; error: string; count: number }>
  breakers: Array<PolicyStateMap['circuit_breaker'] & { rejections: number }>
  bulkheads: Array<PolicyStateMap['bulkhead'] & { rejections: number }>
  rateLimits: Array<{ route: string; limit: string; decision: string; count: number }>
  upstreams: UpstreamSnapshot[]
}

export function dashboardStats(metrics: GatewayMetrics): DashboardStats {
  const routes = new Map<string, RouteStats>()
  const routeStats = (route: string): RouteStats => {
    let stats = routes.get(route)
    if (stats === undefined) {
      stats = { route, requests: 0, byClass: {}, inFlight: 0, latency: new Array(LATENCY_BUCKETS.length + 1).fill(0), p50: null, p95: null, p99: null }
      routes.set(route, stats)
    }
    return stats
  }
  for (const { labels, child } of metrics.requests.series()) {
    const [route, , statusClass] = labels as [string, string, string]
    const stats = routeStats(route)
    stats.requests += child.value
    stats.byClass[statusClass] = (stats.byClass[statusClass] ?? 0) + child.value
  }
  for (const { labels, child } of metrics.inFlight.series()) routeStats(labels[0]!).inFlight = child.value
  for (const { labels, child } of metrics.requestDuration.series()) {
    const stats = routeStats(labels[0]!)
    const counts = (child as HistogramChild).counts
    for (let index = 0; index < counts.length; index++) stats.latency[index]! += counts[index]!
  }
  for (const stats of routes.values()) {
    stats.p50 = quantile(0.5, stats.latency, LATENCY_BUCKETS) ?? null
    stats.p95 = quantile(0.95, stats.latency, LATENCY_BUCKETS) ?? null
    stats.p99 = quantile(0.99, stats.latency, LATENCY_BUCKETS) ?? null
  }
  const counted = <T>(family: GatewayMetrics['errors'], shape: (labels: readonly string[], count: number) => T): T[] =>
    [...family.series()].filter(({ child }) => child.value > 0).map(({ labels, child }) => shape(labels, child.value))
  const rejectionsBy = (family: GatewayMetrics['errors'], key: (labels: readonly string[]) => string) => {
    const totals = new Map<string, number>()
    for (const { labels, child } of family.series()) totals.set(key(labels), (totals.get(key(labels)) ?? 0) + child.value)
    return totals
  }
  const breakerRejections = rejectionsBy(metrics.breakerRejections, ([route, upstream]) => `${route}/${upstream}`)
  const bulkheadRejections = rejectionsBy(metrics.bulkheadRejections, ([route]) => route!)
  const sources = metrics.sources()
  return {
    time: Date.now(),
    buckets: LATENCY_BUCKETS,
    routes: [...routes.values()].sort((a, b) => a.route.localeCompare(b.route)),
    errors: counted(metrics.errors, ([route, error], count) => ({ route: route!, error: error!, count })),
    breakers: [...sources.states.of('circuit_breaker').values()].map((snapshot) => {
      const shown = snapshot()
      return { ...shown, rejections: breakerRejections.get(`${shown.route}/${shown.upstream}`) ?? 0 }
    }),
    bulkheads: [...sources.states.of('bulkhead').values()].map((snapshot) => {
      const shown = snapshot()
      return { ...shown, rejections: bulkheadRejections.get(shown.route) ?? 0 }
    }),
    rateLimits: counted(metrics.rateLimitDecisions, ([route, limit, decision], count) => ({ route: route!, limit: limit!, decision: decision!, count })),
    upstreams: [...sources.upstreams.values()].map((upstream) => upstream.snapshot()),
  }
}
