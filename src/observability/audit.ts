import * as v from 'valibot'
import { describeValue, expectedGot } from '../core/config-error.ts'
import { arrayOf, integer, name, table } from '../core/schema-kit.ts'
import { convertedString, type Conversion } from '../core/units.ts'
import type { EventBus } from '../core/events.ts'
import type { UpstreamClient } from '../core/host.ts'
import type { RequestObserver, RequestRecord } from './observer.ts'
import { discardBody } from '../core/body.ts'
import { positiveDuration } from '../core/schema-kit.ts'

/** Defaults, and where each comes from. */
const DEFAULT_BATCH = 100 // Kong's queue sends 1 by default, APISIX's batch processor 1000: one POST a second at 100 rps
const DEFAULT_FLUSH = '1s' // Kong max_coalescing_delay 1s (APISIX inactive_timeout 5s)
const DEFAULT_MAX_QUEUE = 10_000 // Kong max_entries 10000
const DEFAULT_TIMEOUT = '5s' // each POST; a sink slower than this is retried
const DEFAULT_BACKOFF_BASE = '100ms' // Kong initial_retry_delay is 10ms; 100ms spares a struggling sink
const DEFAULT_BACKOFF_MAX = '60s' // Kong max_retry_delay 60s
/** The sink's own connect timeout, as an upstream's default connect_timeout. */
const CONNECT_TIMEOUT_MS = 1000
/** How long a trail replaced by a reload keeps sending what it holds: the default shutdown_grace. */
const RETIRED_FLUSH_MS = 10_000

const SINK_EXAMPLE = 'an http:// or https:// URL like "http://127.0.0.1:7000/audit"'
const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/i
/** Credentials do not belong in an audit trail that other systems store and index. */
const SECRET_HEADERS = new Set(['authorization', 'proxy-authorization', 'cookie'])

function toSinkUrl(text: string): Conversion<string> {
  const url = /^https?:\/\//i.test(text) && URL.canParse(text) ? new URL(text) : undefined
  if (url === undefined || url.hostname === '') return { problem: expectedGot(SINK_EXAMPLE, text) }
  if (url.username !== '' || url.password !== '') return { problem: 'expected a sink URL without user name or password' }
  return { value: url.href }
}

function auditHeaderName() {
  return v.pipe(
    v.string((issue) => expectedGot('a header name like "x-tenant"', issue.input)),
    v.regex(TOKEN, (issue) => expectedGot('a header name like "x-tenant"', issue.input)),
    v.check((header) => !SECRET_HEADERS.has(header.toLowerCase()), (issue) => `${describeValue(issue.input)} carries credentials; it is never copied into audit records`),
    v.toLowerCase(),
  )
}

/** [audit] as the file writes it; `routes` names are checked against the routes in load.ts. */
export const auditSchema = v.pipe(
  table({
    sink: convertedString(SINK_EXAMPLE, toSinkUrl),
    batch: v.optional(integer(1, 100_000), DEFAULT_BATCH),
    flush: v.optional(positiveDuration(), DEFAULT_FLUSH),
    max_queue: v.optional(integer(1), DEFAULT_MAX_QUEUE),
    routes: v.optional(
      v.union(
        [v.literal('all'), v.pipe(arrayOf(name()), v.minLength(1, 'expected at least one route name (or "all")'))],
        (issue) => expectedGot('"all" or an array of route names', issue.input),
      ),
      'all',
    ),
    headers: v.optional(arrayOf(auditHeaderName()), () => []),
    timeout: v.optional(positiveDuration(), DEFAULT_TIMEOUT),
    backoff: v.optional(
      table({ base: v.optional(positiveDuration(), DEFAULT_BACKOFF_BASE), max: v.optional(positiveDuration(), DEFAULT_BACKOFF_MAX) }),
      {},
    ),
  }),
  v.forward(
    v.partialCheck(
      [['batch'], ['max_queue']],
      ({ batch, max_queue }) => batch <= max_queue,
      (issue) => expectedGot(`at most max_queue (${issue.input.max_queue})`, issue.input.batch),
    ),
    ['batch'],
  ),
  v.forward(
    v.partialCheck(
      [['backoff']],
      ({ backoff }) => backoff.max >= backoff.base,
      'expected max to be no shorter than base',
    ),
    ['backoff'],
  ),
  v.transform((file): AuditConfig => {
    const audit: AuditConfig = {
      sink: file.sink,
      batch: file.batch,
      flushMs: file.flush,
      maxQueue: file.max_queue,
      headers: [...new Set(file.headers)],
      timeoutMs: file.timeout,
      backoff: { baseMs: file.backoff.base, maxMs: file.backoff.max },
    }
    if (file.routes !== 'all') audit.routes = [...new Set(file.routes)]
    return audit
  }),
)

/** One request as the sink receives it, an element of the POSTed JSON array. */
export interface AuditEntry {
  /** When the request arrived, ISO 8601 UTC. */
  time: string
  service: string
  request_id: string
  route: string
  method: string
  path: string
  status: number
  /** The gateway's error code when it answered for the upstream (upstream_timeout, fault_injected...). */
  code?: string
  /** The upstream the last try went to (for a split route, the version that answered). */
  upstream?: string
  /** Injected faults: "delay", "abort". */
  fault?: string
  client: string
  duration_ms: number
  bytes_out: number
  /** The configured request headers the request carried. */
  headers?: Record<string, string>
}

/** setTimeout and clearTimeout, replaceable so tests can fire flushes, backoffs and timeouts themselves. */
export interface AuditTimers {
  set(callback: () => void, ms: number): unknown
  clear(handle: unknown): void
}

const systemTimers: AuditTimers = {
  set: (callback, ms) => setTimeout(callback, ms),
  clear: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
}

export interface AuditDeps {
  send: UpstreamClient
  events: EventBus
  service: string
  timers?: AuditTimers
  random?: () => number
}

type PostOutcome = 'sent' | 'rejected' | 'failed'

const encoder = new TextEncoder()

/**
 * The audit trail: a RequestObserver that queues one entry per request and POSTs them to the sink as
 * JSON arrays, `batch` at a time or whatever has waited `flush`, one POST at a time, off the request
 * path. The queue holds at most max_queue entries (the batch being sent included); past that new
 * entries are dropped and counted. A failed POST is retried with exponential backoff (equal jitter)
 * while entries keep queueing behind it; a 4xx other than 408 and 429 means the sink refuses the
 * batch, which is dropped rather than retried forever. close() sends what is left, within a deadline.
 *
 * @example new AuditLog(config.audit, { send: runtime.upstream, events, service: 'orders' })
 */
export class AuditLog implements RequestObserver {
  readonly #config: AuditConfig
  readonly #routes: ReadonlySet<string> | undefined
  readonly #send: UpstreamClient
  readonly #events: EventBus
  readonly #service: string
  readonly #timers: AuditTimers
  readonly #random: () => number
  /** Waiting to be sent, oldest first. */
  #queue: AuditEntry[] = []
  /** The batch being sent, or waiting to be sent again after a failure. */
  #batch: AuditEntry[] | undefined
  #failures = 0
  #flushTimer: unknown
  #pump: Promise<void> | undefined
  /** The POST in flight, so close() can cut it at its deadline. */
  #request: AbortController | undefined
  /** Ends a backoff wait early. */
  #wake: (() => void) | undefined
  #closing = false
  #deadline: AbortSignal | undefined

  constructor(config: AuditConfig, deps: AuditDeps) {
    this.#config = config
    this.#routes = config.routes === undefined ? undefined : new Set(config.routes)
    this.#send = deps.send
    this.#events = deps.events
    this.#service = deps.service
    this.#timers = deps.timers ?? systemTimers
    this.#random = deps.random ?? Math.random
  }

  /** Entries held: queued plus the batch being sent. */
  get size(): number {
    return this.#queue.length + (this.#batch?.length ?? 0)
  }

  onResponse(record: RequestRecord): void {
    const route = record.route
    // A request that matched no route never reached a service: nothing to audit.
    if (route === undefined || record.exchange === undefined) return
    if (this.#routes !== undefined && !this.#routes.has(route)) return
    if (this.#deadline?.aborted || this.size >= this.#config.maxQueue) {
      this.#events.emit('audit_dropped', { reason: this.#deadline?.aborted ? 'shutdown' : 'queue_full', records: 1 })
      return
    }
    this.#queue.push(this.#entry(record, route))
    this.#schedule()
  }

  /**
   * Sends everything queued, retrying failures, until the queue is empty or `timeLeftMs` has passed;
   * whatever is left then is dropped and counted. Called once the listeners have stopped.
   */
  async close(timeLeftMs: number): Promise<void> {
    this.#closing = true
    const deadline = new AbortController()
    this.#deadline = deadline.signal
    const expire = () => {
      deadline.abort()
      this.#request?.abort(new Error('shutdown grace ran out'))
      this.#wake?.()
    }
    const timer = timeLeftMs > 0 ? this.#timers.set(expire, timeLeftMs) : undefined
    if (timer === undefined) expire()
    if (this.#flushTimer !== undefined) this.#timers.clear(this.#flushTimer)
    this.#flushTimer = undefined
    // A backoff may be long; the grace is short. Try again now.
    this.#wake?.()
    while (this.size > 0 && !deadline.signal.aborted) {
      this.#startPump()
      await this.#pump
    }
    if (timer !== undefined) this.#timers.clear(timer)
    // Closed: anything that still arrives is dropped and counted.
    deadline.abort()
    const left = this.size
    this.#queue = []
    this.#batch = undefined
    if (left > 0) this.#events.emit('audit_dropped', { reason: 'shutdown', records: left })
  }

  /** A reload replaced this trail (its [audit] changed): send what it holds, as a shutdown would. */
  retire(): Promise<void> {
    return this.close(RETIRED_FLUSH_MS)
  }

  #entry(record: RequestRecord, route: string): AuditEntry {
    const exchange = record.exchange!
    const entry: AuditEntry = {
      time: new Date(record.startedAt).toISOString(),
      service: this.#service,
      request_id: record.requestId,
      route,
      method: record.method,
      path: record.path,
      status: record.status,
      client: record.clientAddress,
      duration_ms: Math.round(record.durationMs * 1000) / 1000,
      bytes_out: record.bytesOut,
    }
    if (record.code !== undefined) entry.code = record.code
    if (exchange.upstream !== undefined) entry.upstream = exchange.upstream
    if (exchange.fault !== undefined) entry.fault = exchange.fault
    const wanted = this.#config.headers
    if (wanted.length > 0) {
      const requestHeaders = exchange.request.headers
      const headers: Record<string, string> = {}
      for (const header of wanted) {
        const value = requestHeaders.get(header)
        if (value !== null) headers[header] = value
      }
      entry.headers = headers
    }
    return entry
  }

  /** Sends now when a batch is full, else makes sure a flush is due within `flush`. */
  #schedule(): void {
    if (this.#pump !== undefined || this.#closing) return
    if (this.#batch !== undefined || this.#queue.length >= this.#config.batch) return this.#startPump()
    if (this.#queue.length > 0 && this.#flushTimer === undefined) {
      this.#flushTimer = this.#timers.set(this.#onFlushTimer, this.#config.flushMs)
    }
  }

  readonly #onFlushTimer = (): void => {
    this.#flushTimer = undefined
    this.#startPump()
  }

  #startPump(): void {
    if (this.#pump !== undefined) return
    if (this.#flushTimer !== undefined) this.#timers.clear(this.#flushTimer)
    this.#flushTimer = undefined
    this.#pump = this.#sendAll().finally(() => {
      this.#pump = undefined
      this.#schedule()
    })
  }

  /** One POST at a time: the batch first, then more while full batches wait (or all, when closing). */
  async #sendAll(): Promise<void> {
    for (;;) {
      if (this.#batch === undefined) {
        if (this.#queue.length === 0) return
        this.#batch = this.#queue.splice(0, this.#config.batch)
      }
      const records = this.#batch.length
      const outcome = await this.#post(this.#batch)
      if (outcome === 'failed') {
        this.#failures++
        const retryInMs = this.#backoffMs()
        this.#events.emit('audit_failed', { records, attempt: this.#failures, retryInMs })
        if (!(await this.#wait(retryInMs))) return
        continue
      }
      this.#batch = undefined
      this.#failures = 0
      if (outcome === 'sent') this.#events.emit('audit_sent', { records })
      else this.#events.emit('audit_dropped', { reason: 'rejected', records })
      if (!this.#closing && this.#queue.length < this.#config.batch) return
    }
  }

  async #post(batch: AuditEntry[]): Promise<PostOutcome> {
    if (this.#deadline?.aborted) return 'failed'
    const controller = new AbortController()
    this.#request = controller
    const timer = this.#timers.set(() => controller.abort(new Error('audit sink timed out')), this.#config.timeoutMs)
    const headers = new Headers()
    headers.set('content-type', 'application/json')
    try {
      const response = await this.#send({
        url: this.#config.sink,
        method: 'POST',
        headers,
        body: encoder.encode(JSON.stringify(batch)),
        signal: controller.signal,
        connectTimeoutMs: CONNECT_TIMEOUT_MS,
      })
      await discardBody(response.body)
      const status = response.status
      if (status >= 200 && status < 300) return 'sent'
      return status >= 400 && status < 500 && status !== 408 && status !== 429 ? 'rejected' : 'failed'
    } catch {
      return 'failed'
    } finally {
      this.#timers.clear(timer)
      this.#request = undefined
    }
  }

  /** Exponential from base to max, equal jitter: never close to zero, so a sink that is down is not hammered. */
  #backoffMs(): number {
    const { baseMs, maxMs } = this.#config.backoff
    const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(this.#failures - 1, 30))
    return ceiling / 2 + (this.#random() * ceiling) / 2
  }

  /** Resolves true after `ms`, or when woken; false if the close deadline has passed. */
  #wait(ms: number): Promise<boolean> {
    if (this.#deadline?.aborted) return Promise.resolve(false)
    return new Promise((resolve) => {
      const done = () => {
        this.#timers.clear(timer)
        this.#wake = undefined
        resolve(!this.#deadline?.aborted)
      }
      const timer = this.#timers.set(done, ms)
      this.#wake = done
    })
  }
}

/** [audit]: one record per request, sent in batches to a sink off the request path. */
export interface AuditConfig {
  sink: string
  batch: number
  flushMs: number
  maxQueue: number // records held, the batch being sent included
  /** Route names to audit; undefined means every route. */
  routes?: string[]
  headers: string[] // request headers copied into each record, lower-case
  timeoutMs: number // each POST to the sink
  backoff: { baseMs: number; maxMs: number }
}

declare module '../core/events.ts' {
  interface GatewayEventMap {
    audit_sent: { records: number }
    /** A POST to the audit sink failed; the batch is sent again after retryInMs. */
    audit_failed: { records: number; attempt: number; retryInMs: number }
    audit_dropped: { reason: 'queue_full' | 'rejected' | 'shutdown'; records: number }
  }
}
