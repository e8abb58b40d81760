import type { Logger } from '../core/log.ts'
import { discardBody } from '../core/body.ts'
import type { UpstreamClient } from '../core/host.ts'
import { BatchFlush, FailureNote, type FlushTimers } from './batch-flush.ts'
import { OtlpJson, type SpanBatch } from './otlp-json.ts'
import type { FinishedSpan } from './tracing.ts'
import type { TracesConfig } from './config.ts'

/** OpenTelemetry's BatchSpanProcessor: at most this many spans per export request. */
export const MAX_BATCH = 512
const EXPORT_TIMEOUT_MS = 10_000
const CONNECT_TIMEOUT_MS = 1000

export interface ExporterDeps extends FlushTimers {
  send: UpstreamClient
  logger: Logger
  version: string
  /** Spans the collector accepted, and spans dropped with why ("queue_full", "export_failed"). */
  exported(count: number): void
  dropped(count: number, reason: string): void
}

/**
 * Sends finished spans to an OTLP/HTTP collector as JSON, in batches, off the request path: a span
 * waits in a bounded queue until `flushMs` has passed or a batch is full. A full queue drops the
 * newest spans; a failed export drops its batch. Both are counted, and a failure is logged once
 * per distinct reason, so a collector that is down costs neither memory nor log volume.
 */
export class OtlpExporter {
  readonly #settings: TracesConfig
  readonly #deps: ExporterDeps
  readonly #json: OtlpJson
  readonly #flush: BatchFlush
  readonly #failure = new FailureNote()
  /** Request bodies being filled, oldest first; spans are written into them as they come, so no span object waits here. */
  #batches: SpanBatch[] = []
  #queued = 0

  constructor(settings: TracesConfig, deps: ExporterDeps) {
    this.#settings = settings
    this.#deps = deps
    const state = { pending: () => this.#queued > 0, full: () => this.#queued >= MAX_BATCH }
    this.#flush = new BatchFlush(() => this.#sendOldest(), state, settings.flushMs, deps)
    const resource: Array<[string, string]> = [['service.name', settings.serviceName], ['telemetry.sdk.name', 'pillion'], ['telemetry.sdk.language', 'js']]
    this.#json = new OtlpJson(resource, { name: 'pillion', version: deps.version })
  }

  get endpoint(): string {
    return this.#settings.otlp
  }

  /** Spans waiting to be sent. */
  get queued(): number {
    return this.#queued
  }

  enqueue(span: FinishedSpan): void {
    if (this.#queued >= this.#settings.maxQueue) {
      this.#deps.dropped(1, 'queue_full')
      return
    }
    let batch = this.#batches.at(-1)
    if (batch === undefined || batch.count >= MAX_BATCH) this.#batches.push((batch = this.#json.batch()))
    this.#json.add(batch, span)
    this.#queued++
    this.#flush.added()
  }

  /** Takes the oldest batch out of the queue and sends it (BatchFlush calls it only with spans queued). */
  #sendOldest(): Promise<void> {
    const batch = this.#batches.shift()!
    this.#queued -= batch.count
    return this.#export(batch)
  }

  /** Sends everything queued, one batch after another; resolves when the queue is empty. */
  flush(): Promise<void> {
    return this.#flush.flush()
  }

  async #export(batch: SpanBatch): Promise<void> {
    const headers = new Headers(this.#settings.headers)
    headers.set('content-type', 'application/json')
    const body = this.#json.end(batch)
    try {
      const response = await this.#deps.send({
        url: this.#settings.otlp,
        method: 'POST',
        headers,
        body,
        signal: AbortSignal.timeout(EXPORT_TIMEOUT_MS),
        connectTimeoutMs: CONNECT_TIMEOUT_MS,
      })
      await discardBody(response.body, 0)
      if (response.status < 200 || response.status > 299) throw new Error(`collector answered ${response.status}`)
      this.#deps.exported(batch.count)
      this.#failure.cleared()
    } catch (error) {
      this.#deps.dropped(batch.count, 'export_failed')
      const reason = this.#failure.changed(error)
      if (reason !== undefined) this.#deps.logger.log('warn', 'trace export failed; dropping spans', { otlp: this.#settings.otlp, error: reason, spans: batch.count })
    }
  }
}
