import type { WebSocketClose } from '../core/websocket.ts'
import type { Logger } from '../core/log.ts'
import type { AppendSink } from '../core/host.ts'
import type { AccessLogField } from './config.ts'
import type { RequestObserver, RequestRecord } from './observer.ts'
import { BatchFlush, FailureNote, type FlushTimers } from './batch-flush.ts'
import { incomingContext } from './trace-context.ts'
import { LineBytes } from './line-bytes.ts'
import type { AccessLogConfig } from './config.ts'

/** Writes wait this long to gather more lines (Envoy's access log flush interval is 1s)... */
export const FLUSH_MS = 1000
/** ...unless this much is waiting already. */
export const FLUSH_BYTES = 64 * 1024
/** A sink that falls this far behind loses lines (counted) rather than growing memory without end. */
export const MAX_PENDING_BYTES = 4 * 1024 * 1024

type Trace = { traceId: string; spanId: string } | undefined
/** The trace ids of the line being written, looked up only when a field asks for them. */
interface TraceOfLine {
  get(): Trace
}
type Getter = (record: RequestRecord, trace: TraceOfLine) => unknown

const round3 = (ms: number) => Math.round(ms * 1000) / 1000

/**
 * new Date(ms).toISOString() with the part up to the seconds kept from the last call: lines of one
 * second share it, so a busy log formats a date once a second instead of once a line.
 */
let isoSecond = Number.NaN
let isoPrefix = ''
function isoTime(ms: number): string {
  const whole = Math.floor(ms)
  const second = Math.floor(whole / 1000)
  if (second !== isoSecond) {
    isoSecond = second
    isoPrefix = new Date(second * 1000).toISOString().slice(0, 20) // "2026-11-26T19:07:40."
  }
  const millis = whole - second * 1000
  return `${isoPrefix}${millis < 10 ? '00' : millis < 100 ? '0' : ''}${millis}Z`
}

/** Each field's value; undefined leaves the key out of the line. */
const GETTERS: Record<AccessLogField, Getter> = {
  time: (r) => isoTime(r.startedAt),
  request_id: (r) => r.requestId,
  trace_id: (_r, trace) => trace.get()?.traceId,
  span_id: (_r, trace) => trace.get()?.spanId,
  route: (r) => r.route,
  method: (r) => r.method,
  host: (r) => r.request.headers.get('host') ?? undefined,
  path: (r) => r.path,
  query: (r) => {
    const search = r.exchange?.search ?? new URL(r.request.url).search
    return search === '' ? undefined : search.slice(1)
  },
  status: (r) => r.status,
  code: (r) => r.code,
  authz: (r) => r.exchange?.authz,
  grpc_status: (r) => r.grpcStatus,
  upstream: (r) => r.exchange?.upstream,
  endpoint: (r) => r.exchange?.endpoint,
  bytes_in: (r) => {
    const length = r.request.headers.get('content-length')
    return length === null ? undefined : Number(length)
  },
  bytes_out: (r) => r.bytesOut,
  duration_ms: (r) => round3(r.durationMs),
  upstream_ms: (r) => (r.exchange?.upstreamMs === undefined ? undefined : round3(r.exchange.upstreamMs)),
  attempts: (r) => r.exchange?.attempts,
  retries: (r) => (r.exchange === undefined ? undefined : Math.max(0, r.exchange.attempts - 1)),
  fallback: (r) => r.exchange?.fallback,
  fault: (r) => r.exchange?.fault,
  client: (r) => r.clientAddress || undefined,
  user_agent: (r) => r.request.headers.get('user-agent') ?? undefined,
}

/** Where a request's trace ids come from: the tracer's span, else the caller's headers. */
export type TraceLookup = (record: RequestRecord) => Trace

export function headerTrace(record: RequestRecord): Trace {
  const context = incomingContext(record.request.headers).context
  return context === undefined ? undefined : { traceId: context.traceId, spanId: context.spanId }
}

/**
 * One JSON line per request. The request path only formats the line and appends it to a buffer;
 * a LineWriter sends the buffer to its sink in batches.
 */
export class AccessLog implements RequestObserver {
  #fields: CompiledField[]
  readonly #writer: LineWriter
  /** Reused for every line: format() is synchronous, so one line is written at a time. */
  readonly #trace: LazyTrace

  constructor(config: AccessLogConfig, writer: LineWriter, traces: TraceLookup = headerTrace) {
    this.#fields = compileFields(config.fields)
    this.#writer = writer
    this.#trace = new LazyTrace(traces)
  }

  /** A reload may change the fields; the sink is the caller's to swap. */
  setFields(fields: readonly string[]): void {
    this.#fields = compileFields(fields)
  }

  get writer(): LineWriter {
    return this.#writer
  }

  /** The JSON line, written out directly: the same text JSON.stringify gives, without an object per line. */
  format(record: RequestRecord): string {
    const trace = this.#trace.reset(record)
    let line = ''
    for (const field of this.#fields) {
      const value = field.get(record, trace)
      if (value === undefined) continue
      line += line === '' ? field.first : field.next
      line += typeof value === 'number' ? (Number.isFinite(value) ? String(value) : 'null') : jsonString(value as string)
    }
    return line === '' ? '{}' : `${line}}`
  }

  onResponse(record: RequestRecord): void {
    this.#writer.push(this.format(record))
  }

  /** A WebSocket's own line when it closes (its handshake had the usual line, status 101). */
  onWebSocketClosed(closed: WebSocketClosedLine): void {
    this.#writer.push(
      JSON.stringify({
        time: new Date().toISOString(),
        type: 'websocket_close',
        request_id: closed.requestId,
        route: closed.route,
        duration_ms: Math.round(closed.durationMs),
        close_code: closed.code,
        close_reason: closed.reason === '' ? undefined : closed.reason,
        closed_by: closed.by,
        messages_in: closed.messagesIn,
        bytes_in: closed.bytesIn,
        messages_out: closed.messagesOut,
        bytes_out: closed.bytesOut,
      }),
    )
  }
}

/** What the line of a closed WebSocket says (the websocket_closed event). */
export type WebSocketClosedLine = WebSocketClose & { route: string; requestId: string; durationMs: number }

class LazyTrace implements TraceOfLine {
  readonly #lookup: TraceLookup
  #record: RequestRecord | undefined
  #trace: Trace | null = null

  constructor(lookup: TraceLookup) {
    this.#lookup = lookup
  }

  reset(record: RequestRecord): this {
    this.#record = record
    this.#trace = null
    return this
  }

  get(): Trace {
    if (this.#trace === null) this.#trace = this.#lookup(this.#record!)
    return this.#trace
  }
}

/** Printable ASCII but `"` and `\\`: JSON writes such a string as it is, between quotes. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/

/** JSON.stringify for a string, skipping its escape pass for the plain ASCII most fields hold. */
function jsonString(value: string): string {
  return PLAIN.test(value) ? `"${value}"` : JSON.stringify(value)
}

/** A field with its key already written as JSON: `{"key":` when it opens the line, `,"key":` after another. */
interface CompiledField {
  get: Getter
  first: string
  next: string
}

function compileFields(fields: readonly string[]): CompiledField[] {
  return fields.map((name) => {
    const key = JSON.stringify(name)
    return { get: GETTERS[name as AccessLogField], first: `{${key}:`, next: `,${key}:` }
  })
}

export interface WriterOptions extends FlushTimers {
  flushMs?: number
  flushBytes?: number
  maxPendingBytes?: number
  /** Lines lost because the sink fell behind or failed. */
  dropped(count: number): void
  logger: Logger
}

/**
 * Buffers lines and writes them to an AppendSink in batches (BatchFlush: 64 KiB or 1 s), one write at
 * a time, in order; past maxPendingBytes lines are dropped and counted. Pushing never waits.
 */
export class LineWriter {
  #sink: AppendSink
  readonly #options: WriterOptions
  readonly #flush: BatchFlush
  readonly #failure = new FailureNote()
  readonly #maxPendingBytes: number
  readonly #pending: LineBytes

  constructor(sink: AppendSink, options: WriterOptions) {
    this.#sink = sink
    this.#options = options
    const flushBytes = options.flushBytes ?? FLUSH_BYTES
    // Room past a full batch for the line that makes it full: a batch is then one chunk, written without a copy.
    this.#pending = new LineBytes(flushBytes + 16 * 1024)
    this.#maxPendingBytes = options.maxPendingBytes ?? MAX_PENDING_BYTES
    const state = { pending: () => this.#pending.lines > 0, full: () => this.#pending.bytes >= flushBytes }
    this.#flush = new BatchFlush(() => this.#write(), state, options.flushMs ?? FLUSH_MS, options)
  }

  push(line: string): void {
    if (!this.#pending.append(line, this.#maxPendingBytes)) {
      this.#options.dropped(1)
      return
    }
    this.#flush.added()
  }

  /** Writes whatever is buffered; resolves once it is written (or failed). */
  flush(): Promise<void> {
    return this.#flush.flush()
  }

  /** Flushes, then closes the sink. */
  async close(): Promise<void> {
    await this.flush()
    await this.#sink.close().catch(() => {})
  }

  /** Writes the lines gathered so far in one write. */
  async #write(): Promise<void> {
    const lines = this.#pending.lines
    const bytes = this.#pending.take()
    try {
      await this.#sink.write(bytes)
      this.#failure.cleared()
    } catch (error) {
      this.#options.dropped(lines)
      const reason = this.#failure.changed(error)
      if (reason !== undefined) this.#options.logger.log('warn', 'access log write failed; dropping lines', { error: reason, lines })
    }
  }
}
