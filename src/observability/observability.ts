import type { EventBus } from '../core/events.ts'
import type { Exchange } from '../proxy/exchange.ts'
import type { Logger } from '../core/log.ts'
import type { Runtime } from '../core/host.ts'
import { AccessLog, headerTrace, LineWriter } from './access-log.ts'
import { defaultObservability } from './config.ts'
import { GatewayMetrics } from './metrics.ts'
import type { RequestObserver, RequestRecord } from './observer.ts'
import { OtlpExporter } from './otlp.ts'
import { Tracer } from './tracing.ts'
import type { AccessLogConfig, ObservedConfig, TracesConfig } from './config.ts'

export type ObservabilityRuntime = Pick<Runtime, 'name' | 'version' | 'upstream' | 'openAppendSink'> & Partial<Pick<Runtime, 'memory'>>

/** A config's observability settings, opened but not yet in service; a reload commits or aborts it. */
export interface PreparedObservability {
  commit(): void
  abort(): void
}

/**
 * Metrics, traces and the access log, made once per process and kept across config reloads: the
 * one observer it hands out stays the same object while a reload swaps what is behind it (a new
 * log file, a new collector), and counters keep counting.
 */
export interface Observability {
  readonly metrics: GatewayMetrics
  /** Pass to createGateway for every config generation. */
  readonly observers: readonly RequestObserver[]
  /** Opens what a new config's [observability] needs (a log file); nothing changes until commit. */
  prepare(config: ObservedConfig): Promise<PreparedObservability>
  /** Counts a generation's events in the metrics, and writes the line of each closed WebSocket. */
  watch(events: EventBus): void
  /** Writes buffered log lines and sends queued spans, waiting at most `timeoutMs`; for shutdown. */
  close(timeoutMs: number): Promise<void>
}

interface Generation {
  accessLog: AccessLog | undefined
  accessLogTo: string | undefined
  tracer: Tracer | undefined
  exporter: OtlpExporter | undefined
  tracesKey: string | undefined
}

/**
 * @example
 * const observability = await createObservability(config, runtime, logger, VERSION)
 * createGateway(config, runtime, logger, observability.observers, events)
 */
export async function createObservability(config: ObservedConfig, runtime: ObservabilityRuntime, logger: Logger, version: string): Promise<Observability> {
  const metrics = new GatewayMetrics({ version, runtime: runtime.name, memory: runtime.memory })
  // One tracer for the process: spans of requests that began before a reload still find their context.
  let sharedTracer: Tracer | undefined
  let current: Generation = { accessLog: undefined, accessLogTo: undefined, tracer: undefined, exporter: undefined, tracesKey: undefined }

  const traceOf = (record: RequestRecord) => {
    const span = record.exchange === undefined ? undefined : current.tracer?.contextOf(record.exchange)
    return span === undefined ? headerTrace(record) : { traceId: span.traceId, spanId: span.spanId }
  }

  // The one observer every generation's listeners call; it reads `current` at each request.
  const telemetry: RequestObserver = {
    onRequest(exchange: Exchange) {
      metrics.onRequest(exchange)
      current.tracer?.onRequest(exchange)
    },
    onResponse(record: RequestRecord) {
      metrics.onResponse(record)
      current.tracer?.onResponse(record)
      current.accessLog?.onResponse(record)
    },
  }

  async function openAccessLog(settings: AccessLogConfig): Promise<AccessLog> {
    let sink
    try {
      sink = await runtime.openAppendSink(settings.to)
    } catch (error) {
      throw new Error(`cannot open the access log ${settings.to}: ${(error as Error).message}`)
    }
    const writer = new LineWriter(sink, { logger, dropped: (count) => (metrics.accessLogDropped.labels().value += count) })
    return new AccessLog(settings, writer, traceOf)
  }

  function newExporter(traces: TracesConfig): OtlpExporter {
    return new OtlpExporter(traces, {
      send: runtime.upstream,
      logger,
      version,
      exported: (count) => (metrics.spansExported.labels().value += count),
      dropped: (count, reason) => (metrics.spansDropped.labels(reason).value += count),
    })
  }

  async function prepare(next: ObservedConfig): Promise<PreparedObservability> {
    const settings = next.observability ?? defaultObservability()
    const logTo = settings.accessLog.to === 'off' ? undefined : settings.accessLog.to
    const reuseLog = logTo !== undefined && logTo === current.accessLogTo
    const accessLog = logTo === undefined ? undefined : reuseLog ? current.accessLog : await openAccessLog(settings.accessLog)
    const traces = settings.traces
    const tracesKey = traces === undefined ? undefined : JSON.stringify([traces.otlp, traces.serviceName, traces.headers, traces.flushMs, traces.maxQueue])
    const exporter = traces === undefined ? undefined : tracesKey === current.tracesKey ? current.exporter : newExporter(traces)
    const tracer = traces === undefined ? undefined : (sharedTracer ??= new Tracer({ sample: traces.sample, export: (span) => current.exporter?.enqueue(span) }))
    return {
      commit() {
        const previous = current
        accessLog?.setFields(settings.accessLog.fields)
        if (tracer !== undefined) tracer.apply(next, traces!)
        current = { accessLog, accessLogTo: logTo, tracer, exporter, tracesKey }
        // What the new config no longer uses finishes its work in the background.
        if (previous.accessLog !== undefined && previous.accessLog !== accessLog) void previous.accessLog.writer.close()
        if (previous.exporter !== undefined && previous.exporter !== exporter) void previous.exporter.flush()
      },
      abort() {
        if (accessLog !== undefined && accessLog !== current.accessLog) void accessLog.writer.close()
      },
    }
  }

  ;(await prepare(config)).commit()
  return {
    metrics,
    observers: [telemetry],
    prepare,
    watch(events) {
      metrics.watch(events)
      events.on('websocket_closed', (closed) => current.accessLog?.onWebSocketClosed(closed))
    },
    async close(timeoutMs) {
      let timer: ReturnType<typeof setTimeout> | undefined
      const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))
      await Promise.race([Promise.all([current.accessLog?.writer.close(), current.exporter?.flush()]), timeout])
      clearTimeout(timer)
    },
  }
}
