import type { WebSocketClose } from '../core/websocket.ts'
import type { Logger } from '../core/log.ts'
import type { AppendSink } from '../core/host.ts'
import type { AccessLogField } from './config.ts'
import type { RequestObserver, RequestRecord } from './observer.ts'
import { BatchFlush, FailureNote, type FlushTimers } from './batch-flush.ts'
import { incomingContext } from './trace-context.ts'
import { LineBytes } from './line-bytes.ts'
import { asciiBytes, JsonLine } from './json-line.ts'
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

/** Each field's value; undefined leaves the key out of the line. How a number is written is the field's FORMS entry. */
const GETTERS: Record<AccessLogField, Getter> = {
  time: (r) => r.startedAt,
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
  duration_ms: (r) => r.durationMs,
  upstream_ms: (r) => r.exchange?.upstreamMs,
  attempts: (r) => r.exchange?.attempts,
  retries: (r) => (r.exchange === undefined ? undefined : Math.max(0, r.exchange.attempts - 1)),
  fallback: (r) => r.exchange?.fallback,
  fault: (r) => r.exchange?.fault,
  client: (r) => r.clientAddress || undefined,
  user_agent: (r) => r.request.headers.get('user-agent') ?? undefined,
}

/** Numbers written other than as they are: times as an ISO 8601 string, durations rounded to the microsecond. */
const FORMS: Partial<Record<AccessLogField, 'timestamp' | 'millis'>> = { time: 'timestamp', duration_ms: 'millis', upstream_ms: 'millis' }

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
  /** Reused for every line: a line is written synchronously, one at a time. */
  readonly #trace: LazyTrace
  readonly #line = new JsonLine()

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

  /** The JSON line as text: what onResponse writes, for tests and tools. */
  format(record: RequestRecord): string {
    this.#write(record)
    return this.#line.text()
  }

  onResponse(record: RequestRecord): void {
    this.#write(record)
    this.#writer.pushBytes(this.#line.bytes, this.#line.length)
  }

  /** The line, written field by field into #line: the same text JSON.stringify gives, without an object or a string per line. */
  #write(record: RequestRecord): void {
    const trace = this.#trace.reset(record)
    const line = this.#line
    line.start()
    for (const field of this.#fields) {
      const value = field.get(record, trace)
      if (value === undefined) continue
      line.raw(line.empty ? field.first : field.next)
      if (typeof value === 'string') line.string(value)
      else if (field.form === undefined) line.number(value as number)
      else if (field.form === 'millis') line.millis3(value as number)
      else line.timestamp(value as number)
    }
    line.raw(line.empty ? EMPTY : CLOSE)
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

/** A field with its key already written as JSON: `{"key":` when it opens the line, `,"key":` after another. */
interface CompiledField {
  get: Getter
  form: 'timestamp' | 'millis' | undefined
  first: Uint8Array
  next: Uint8Array
}

const EMPTY = asciiBytes('{}')
const CLOSE = asciiBytes('}')

function compileFields(fields: readonly string[]): CompiledField[] {
  return fields.map((name) => {
    const key = JSON.stringify(name)
    return { get: GETTERS[name as AccessLogField], form: FORMS[name as AccessLogField], first: asciiBytes(`{${key}:`), next: asciiBytes(`,${key}:`) }
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
    this.#added(this.#pending.append(line, this.#maxPendingBytes))
  }

  /** A line already in UTF-8 (the first `length` bytes), copied in. */
  pushBytes(bytes: Uint8Array, length: number): void {
    this.#added(this.#pending.appendBytes(bytes, length, this.#maxPendingBytes))
  }

  #added(admitted: boolean): void {
    if (admitted) this.#flush.added()
    else this.#options.dropped(1)
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
