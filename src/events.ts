/**
 * What policies tell observers. Policies emit; logs and metrics subscribe (cockatiel's onBreak/onReject
 * shape): no policy knows about logging or metrics.
 */
export type BreakerState = 'closed' | 'open' | 'half_open'

export interface GatewayEventMap {
  retry: { route: string; attempt: number; reason: string; delayMs: number }
  retry_give_up: { route: string; attempts: number; reason: string }
  retry_budget_exhausted: { route: string }
  breaker_transition: { route: string; upstream: string; from: BreakerState; to: BreakerState }
  breaker_reject: { route: string; upstream: string }
  bulkhead_reject: { route: string; reason: 'full' | 'queue_timeout' }
  fallback_served: { route: string; kind: 'stale' | 'upstream' | 'static'; cause: string }
  endpoint_ejected: { upstream: string; endpoint: string; times: number; durationMs: number }
  endpoint_returned: { upstream: string; endpoint: string }
  health_check: { upstream: string; endpoint: string; ok: boolean; healthy: boolean; changed: boolean }
  discovery_updated: { upstream: string; endpoints: number }
  discovery_failed: { upstream: string; error: string }
}

export type GatewayEventName = keyof GatewayEventMap
type Listener<K extends GatewayEventName> = (event: GatewayEventMap[K]) => void

export class EventBus {
  readonly #listeners: { [K in GatewayEventName]?: Array<Listener<K>> } = {}

  on<K extends GatewayEventName>(name: K, listener: Listener<K>): () => void {
    const list = (this.#listeners[name] ??= []) as Array<Listener<K>>
    list.push(listener)
    return () => list.splice(list.indexOf(listener) >>> 0, 1)
  }

  /** Cheap when nobody listens, so policies may emit on the request path. */
  emit<K extends GatewayEventName>(name: K, event: GatewayEventMap[K]): void {
    const list = this.#listeners[name] as Array<Listener<K>> | undefined
    if (list === undefined) return
    for (const listener of list) listener(event)
  }

  hasListeners(name: GatewayEventName): boolean {
    return (this.#listeners[name]?.length ?? 0) > 0
  }
}
