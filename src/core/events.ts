/**
 * What policies and upstreams tell observers, by event name. Each owner adds its events from its
 * own folder (`declare module '…/core/events.ts' { interface GatewayEventMap { … } }`), so this
 * file names none of them. Policies emit; logs and metrics subscribe (cockatiel's onBreak/onReject
 * shape): no policy knows about logging or metrics.
 */
export interface GatewayEventMap {}

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
