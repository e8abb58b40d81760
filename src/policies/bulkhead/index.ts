import * as v from 'valibot'
import { integer, table } from '../../core/schema-kit.ts'
import { duration } from '../../core/units.ts'
import { GatewayError } from '../../core/errors.ts'
import type { EventBus, GatewayEventMap } from '../../core/events.ts'
import type { Exchange, Layer, Step } from '../../proxy/exchange.ts'
import type { PolicyModule, RouteContext } from '../policy.ts'
import type { Abortable } from '../../core/cancel.ts'

/**
 * How long a queued request waits when max_queue is set without queue_timeout. Long enough to ride
 * out a burst of ordinary calls, short next to the 15s route timeout, so a caller hears 503 (which
 * it may retry elsewhere) well before its own deadline.
 */
export const DEFAULT_QUEUE_TIMEOUT_MS = 1000

const bulkheadTable = table({
  max_concurrent: integer(1),
  // 0 as in resilience4j (maxWaitDuration 0), Polly (QueueLimit 0) and cockatiel: refuse at once.
  max_queue: v.optional(integer(0), 0),
  queue_timeout: v.optional(duration()),
})

/**
 * [routes.bulkhead]: at most max_concurrent requests in flight, max_queue more waiting for a slot
 * for at most queue_timeout; everything beyond gets 503 bulkhead_full.
 */
export const bulkheadPolicy: PolicyModule<BulkheadPolicy, 'bulkhead'> = {
  key: 'bulkhead',
  field: 'bulkhead',
  schema: v.pipe(
    bulkheadTable,
    v.forward(
      v.partialCheck(
        [['max_queue'], ['queue_timeout']],
        ({ max_queue, queue_timeout }) => queue_timeout === undefined || max_queue > 0,
        'has no effect while max_queue is 0 (requests beyond max_concurrent are refused at once); set max_queue to let them wait',
      ),
      ['queue_timeout'],
    ),
    v.forward(
      v.partialCheck(
        [['max_queue'], ['queue_timeout']],
        ({ max_queue, queue_timeout }) => queue_timeout !== 0 || max_queue === 0,
        'expected a duration of at least "1ms", got "0s" (to refuse at once instead of queueing, set max_queue = 0)',
      ),
      ['queue_timeout'],
    ),
    v.transform(
      ({ max_concurrent, max_queue, queue_timeout }): BulkheadPolicy => ({
        maxConcurrent: max_concurrent,
        maxQueue: max_queue,
        queueTimeoutMs: max_queue === 0 ? 0 : (queue_timeout ?? DEFAULT_QUEUE_TIMEOUT_MS),
      }),
    ),
  ),
  builtInDefault: undefined,
  layer: (policy, context) => bulkheadLayer(policy, context),
}

/** A bulkhead's state as an admin page or a metrics gauge would show it. */
export interface BulkheadSnapshot {
  route: string
  /** Requests holding a slot: admitted and not yet finished. */
  active: number
  queued: number
  maxConcurrent: number
  maxQueue: number
}

/** setTimeout and clearTimeout, replaceable so tests can see every pending queue timer. */
export interface QueueTimers {
  set(expire: (waiter: Waiter) => void, ms: number, waiter: Waiter): unknown
  clear(handle: unknown): void
}

const systemTimers: QueueTimers = {
  set: (expire, ms, waiter) => setTimeout(expire, ms, waiter),
  clear: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
}

/** A layer that also reports its state, so the pipeline can register it for admin and metrics. */
export type BulkheadLayer = Layer & { snapshot(): BulkheadSnapshot }

/**
 * Caps concurrent requests on the route. A slot is held from admission until the exchange finishes
 * (response body delivered, failed or cancelled), or until the inner step throws.
 * Our own rather than cockatiel's, whose bulkhead has no queue timeout; the shape is the same.
 *
 * @example bulkheadLayer({ maxConcurrent: 50, maxQueue: 100, queueTimeoutMs: 100 }, context)
 */
export function bulkheadLayer(policy: BulkheadPolicy, context: RouteContext, timers = systemTimers): BulkheadLayer {
  const slots = context.keep('bulkhead', policy, () => new Bulkhead(policy, context.route.name, context.events, timers))
  const layer = (next: Step): Step =>
    async function bulkhead(exchange: Exchange): Promise<Response> {
      if (!slots.tryAcquire()) await slots.waitForSlot(exchange.signal)
      let response: Response
      try {
        response = await next(exchange)
      } catch (error) {
        // Nothing of ours is in flight any more; a fallback above must not run on our slot.
        slots.release()
        throw error
      }
      exchange.onFinish(slots.release)
      return response
    }
  const snapshot = () => slots.snapshot()
  context.gateway.states.register('bulkhead', context.route.name, snapshot)
  return Object.assign(layer, { snapshot })
}

/** One queued request: a node of the FIFO's doubly linked list, and its own abort listener. */
class Waiter {
  /** False once it has left the queue, whichever way: a late timer or abort then does nothing. */
  waiting = true
  prev: Waiter | undefined = undefined
  next: Waiter | undefined = undefined
  timer: unknown = undefined
  readonly bulkhead: Bulkhead
  readonly signal: Abortable
  readonly resolve: () => void
  readonly reject: (reason: unknown) => void

  constructor(bulkhead: Bulkhead, signal: Abortable, resolve: () => void, reject: (reason: unknown) => void) {
    this.bulkhead = bulkhead
    this.signal = signal
    this.resolve = resolve
    this.reject = reject
  }

  /** The exchange was aborted (client gone, route timeout) while waiting. */
  handleEvent(): void {
    this.bulkhead.abandon(this)
  }
}

function expire(waiter: Waiter): void {
  waiter.bulkhead.expire(waiter)
}

const ONCE = { once: true } as const

/** The counting semaphore with its FIFO queue; one per route, built at config load. */
class Bulkhead {
  active = 0
  queued = 0
  #head: Waiter | undefined
  #tail: Waiter | undefined
  readonly #route: string
  readonly #maxConcurrent: number
  readonly #maxQueue: number
  readonly #queueTimeoutMs: number
  readonly #events: EventBus
  readonly #timers: QueueTimers
  readonly #fullEvent: GatewayEventMap['bulkhead_reject']
  readonly #timeoutEvent: GatewayEventMap['bulkhead_reject']
  readonly #fullMessage: string
  readonly #timeoutMessage: string

  constructor(policy: BulkheadPolicy, route: string, events: EventBus, timers: QueueTimers) {
    this.#route = route
    this.#maxConcurrent = policy.maxConcurrent
    this.#maxQueue = policy.maxQueue
    this.#queueTimeoutMs = policy.queueTimeoutMs
    this.#events = events
    this.#timers = timers
    this.#fullEvent = Object.freeze({ route, reason: 'full' })
    this.#timeoutEvent = Object.freeze({ route, reason: 'queue_timeout' })
    const busy = `all ${policy.maxConcurrent} concurrent slots are busy`
    this.#fullMessage = policy.maxQueue === 0 ? busy : `${busy} and the queue of ${policy.maxQueue} is full`
    this.#timeoutMessage = `no concurrent slot came free within ${policy.queueTimeoutMs}ms`
  }

  tryAcquire(): boolean {
    // The queue is only ever non-empty while every slot is taken, so a free slot means nobody waits.
    if (this.active >= this.#maxConcurrent) return false
    this.active++
    return true
  }

  /** Resolves once a slot has been handed over; rejects when the queue is full, on timeout, or on abort. */
  waitForSlot(signal: Abortable): Promise<void> {
    if (this.queued >= this.#maxQueue) {
      this.#events.emit('bulkhead_reject', this.#fullEvent)
      return Promise.reject(new GatewayError('bulkhead_full', this.#fullMessage))
    }
    // An aborted signal never fires 'abort' again; the entry would sit until its timer.
    if (signal.aborted) return Promise.reject(signal.reason)
    return new Promise((resolve, reject) => this.#enqueue(new Waiter(this, signal, resolve, reject)))
  }

  /** Hoisted so the request path passes it to onFinish without a closure per request. */
  readonly release = (): void => {
    const waiter = this.#head
    if (waiter === undefined) {
      this.active--
      return
    }
    // The slot passes straight to the oldest waiter, so a newcomer can never overtake the queue.
    this.#remove(waiter)
    waiter.resolve()
  }

  expire(waiter: Waiter): void {
    waiter.timer = undefined
    if (!this.#remove(waiter)) return
    this.#events.emit('bulkhead_reject', this.#timeoutEvent)
    waiter.reject(new GatewayError('bulkhead_full', this.#timeoutMessage))
  }

  abandon(waiter: Waiter): void {
    if (!this.#remove(waiter)) return
    waiter.reject(waiter.signal.reason)
  }

  snapshot(): BulkheadSnapshot {
    return {
      route: this.#route,
      active: this.active,
      queued: this.queued,
      maxConcurrent: this.#maxConcurrent,
      maxQueue: this.#maxQueue,
    }
  }

  #enqueue(waiter: Waiter): void {
    waiter.prev = this.#tail
    if (this.#tail === undefined) this.#head = waiter
    else this.#tail.next = waiter
    this.#tail = waiter
    this.queued++
    waiter.signal.addEventListener('abort', waiter, ONCE)
    waiter.timer = this.#timers.set(expire, this.#queueTimeoutMs, waiter)
  }

  /** Unlinks the waiter and drops its timer and listener; false if it had already left. */
  #remove(waiter: Waiter): boolean {
    if (!waiter.waiting) return false
    waiter.waiting = false
    if (waiter.prev === undefined) this.#head = waiter.next
    else waiter.prev.next = waiter.next
    if (waiter.next === undefined) this.#tail = waiter.prev
    else waiter.next.prev = waiter.prev
    waiter.prev = waiter.next = undefined
    this.queued--
    if (waiter.timer !== undefined) this.#timers.clear(waiter.timer)
    waiter.signal.removeEventListener('abort', waiter)
    return true
  }
}

export interface BulkheadPolicy {
  maxConcurrent: number
  maxQueue: number
  queueTimeoutMs: number
}

declare module '../../core/events.ts' {
  interface GatewayEventMap {
    bulkhead_reject: { route: string; reason: 'full' | 'queue_timeout' }
  }
}

declare module '../../core/policy-states.ts' {
  interface PolicyStateMap {
    /** Keyed by route. */
    bulkhead: BulkheadSnapshot
  }
}
