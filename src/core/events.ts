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
  auth_reject: { route: string; policy: 'jwt' | 'api_key'; reason: string }
  jwks_refresh: { url: string; reason: 'initial' | 'expired' | 'unknown_kid'; ok: boolean; keys: number; error?: string }
  api_keys_loaded: { file: string; keys: number }
  api_keys_failed: { file: string; error: string }
  ip_reject: { route: string; address: string; reason: 'denied' | 'not_allowed' }
  limit_reject: { route: string; limit: 'body' | 'headers' | 'url' | 'method' | 'client_timeout' }
  mirror_dropped: { route: string; upstream: string; reason: 'max_in_flight' | 'body_too_large' }
  /** A shadow copy ended: its status, or the error code it failed with. */
  mirror_done: { route: string; upstream: string; status: number | undefined; error: string | undefined; durationMs: number }
  fault_injected: { route: string; upstream: string; kind: 'delay' | 'abort'; source: 'percent' | 'header'; delayMs?: number; status?: number }
  audit_sent: { records: number }
  /** A POST to the audit sink failed; the batch is sent again after retryInMs. */
  audit_failed: { records: number; attempt: number; retryInMs: number }
  audit_dropped: { reason: 'queue_full' | 'rejected' | 'shutdown'; records: number }
  /** One limit's verdict on one request; a dry-run limit's refusal let the request through. */
  rate_limit_decision: { route: string; limit: string; allowed: boolean; dryRun: boolean }
  /** Redis failed or was slow: the first failure, then at most one event per 10 s with the count since the last. */
  redis_error: { error: string; failures: number; onError: 'allow' | 'deny' }
  /** Redis answered again after a redis_error; failures not yet reported in one. */
  redis_recovered: { failures: number }
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
