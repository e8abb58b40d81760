import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { loadConfigText } from '../../../src/config/load.ts'
import type { RequestRecord } from '../../../src/observability/observer.ts'
import { MAX_BATCH, OtlpExporter } from '../../../src/observability/otlp.ts'
import { unixNanos } from '../../../src/observability/otlp-json.ts'
import { formatTraceparent, incomingContext, parseB3, parseTraceparent, randomId } from '../../../src/observability/trace-context.ts'
import { SPAN_KIND, STATUS_CODE, Tracer, type FinishedSpan } from '../../../src/observability/tracing.ts'
import { Exchange } from '../../../src/proxy/exchange.ts'
import type { UpstreamRequest } from '../../../src/core/host.ts'
import { rejection } from '../fakes/policy-text.ts'
import { fakeTimers, recordingLogger } from './flush-fakes.ts'
import type { TracesConfig } from '../../../src/observability/config.ts'

const TRACE = '0af7651916cd43dd8448eb211c80319c'
const PARENT = 'b7ad6b7169203331'

describe('traceparent', () => {
  test('parses the W3C example and its sampled flag', () => {
    assert.deepEqual(parseTraceparent(`00-${TRACE}-${PARENT}-01`), { traceId: TRACE, spanId: PARENT, sampled: true })
    assert.deepEqual(parseTraceparent(`00-${TRACE}-${PARENT}-00`), { traceId: TRACE, spanId: PARENT, sampled: false })
    assert.equal(parseTraceparent(`00-${TRACE}-${PARENT}-03`)?.sampled, true)
  })

  test('refuses what §3.2 calls invalid', () => {
    for (const bad of [
      `00-${'0'.repeat(32)}-${PARENT}-01`, // all-zero trace id
      `00-${TRACE}-${'0'.repeat(16)}-01`, // all-zero parent id
      `00-${TRACE.toUpperCase()}-${PARENT}-01`, // upper case
      `ff-${TRACE}-${PARENT}-01`, // version ff
      `00-${TRACE}-${PARENT}-01-extra`, // version 00 has exactly four fields
      `00-${TRACE}-${PARENT}`,
      'garbage',
    ]) {
      assert.equal(parseTraceparent(bad), undefined, bad)
    }
  })

  test('a later version may carry more fields; the known prefix is used', () => {
    assert.deepEqual(parseTraceparent(`01-${TRACE}-${PARENT}-01-what-comes-next`), { traceId: TRACE, spanId: PARENT, sampled: true })
  })

  test('formats with our span id and the decision', () => {
    assert.equal(formatTraceparent(TRACE, PARENT, true), `00-${TRACE}-${PARENT}-01`)
    assert.equal(formatTraceparent(TRACE, PARENT, false), `00-${TRACE}-${PARENT}-00`)
  })

  test('random ids are hex of the right length', () => {
    assert.match(randomId(16), /^[0-9a-f]{32}$/)
    assert.match(randomId(8), /^[0-9a-f]{16}$/)
    assert.notEqual(randomId(8), randomId(8))
  })

  test('ids stay distinct and well formed across many refills of the random pool', () => {
    const ids = new Set<string>()
    for (let i = 0; i < 3000; i++) ids.add(randomId(i % 2 === 0 ? 16 : 8))
    assert.equal(ids.size, 3000)
    for (const id of ids) assert.match(id, /^(?:[0-9a-f]{16}|[0-9a-f]{32})$/)
  })
})

describe('b3 single header', () => {
  test('128- and 64-bit trace ids, sampling states, and a lone decision', () => {
    assert.deepEqual(parseB3(`${TRACE}-${PARENT}-1`), { context: { traceId: TRACE, spanId: PARENT, sampled: true } })
    assert.deepEqual(parseB3(`a3ce929d0e0e4736-${PARENT}-d-05e3ac9a4f6e3b90`), {
      context: { traceId: `0000000000000000a3ce929d0e0e4736`, spanId: PARENT, sampled: true },
    })
    assert.deepEqual(parseB3(`${TRACE}-${PARENT}`), { context: { traceId: TRACE, spanId: PARENT, sampled: false } })
    assert.deepEqual(parseB3('0'), { sampled: false })
    assert.equal(parseB3(`${TRACE}-${PARENT}-x`), undefined)
    assert.equal(parseB3('nonsense'), undefined)
  })

  test('traceparent wins when both are sent (Linkerd), b3 is used alone', () => {
    const both = new Headers({ traceparent: `00-${TRACE}-${PARENT}-00`, b3: `${'1'.repeat(32)}-${'2'.repeat(16)}-1` })
    assert.deepEqual(incomingContext(both), { context: { traceId: TRACE, spanId: PARENT, sampled: false }, b3: true })
    const b3Only = new Headers({ b3: `${TRACE}-${PARENT}-1` })
    assert.equal(incomingContext(b3Only).context?.traceId, TRACE)
    assert.deepEqual(incomingContext(new Headers()), { b3: false })
  })
})

const CONFIG = loadConfigText(
  `[gateway]
service = "orders"
[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"
[listeners.egress]
listen = "127.0.0.1:0"
direction = "egress"
[upstreams.local]
endpoints = ["http://127.0.0.1:1"]
[[routes]]
name = "api"
listener = "ingress"
path = "/api/*"
upstream = "local"
[[routes]]
name = "out"
listener = "egress"
path = "/out/*"
upstream = "local"
[observability.traces]
otlp = "http://127.0.0.1:4318/v1/traces"
sample = 0.5
`,
  'x.toml',
)
const TRACES = CONFIG.observability!.traces!

function exchangeFor(route: string, headers: Record<string, string> = {}): Exchange {
  const request = new Request(`http://gw/${route}/x`, { headers: { host: 'gw:8080', 'user-agent': 'test', ...headers } })
  const exchange = new Exchange(request, { remoteAddress: '10.1.2.3' }, 'req-1', `/${route}/x`, '', 0)
  exchange.route = route
  return exchange
}

function recordOf(exchange: Exchange, status: number, code?: RequestRecord['code']): RequestRecord {
  return {
    requestId: exchange.requestId,
    route: exchange.route,
    method: 'GET',
    path: exchange.path,
    status,
    code,
    startedAt: 1_700_000_000_000.25,
    durationMs: 12.5,
    bytesOut: 42,
    clientAddress: '10.1.2.3',
    exchange,
    request: exchange.request,
  }
}

function tracerWith(random: number) {
  const spans: FinishedSpan[] = []
  const tracer = new Tracer({ sample: TRACES.sample, export: (span) => spans.push(span), random: () => random })
  tracer.apply(CONFIG, TRACES)
  return { tracer, spans }
}

const edits = (exchange: Exchange) => Object.fromEntries(exchange.upstreamHeaderEdits ?? [])

describe('tracer', () => {
  test('continues the caller trace: our span id goes upstream as the parent, and the span links to the caller', () => {
    const { tracer, spans } = tracerWith(0.99)
    const exchange = exchangeFor('api', { traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: 'vendor=1' })
    tracer.onRequest(exchange)
    const sent = parseTraceparent(edits(exchange).traceparent!)!
    assert.equal(sent.traceId, TRACE)
    assert.notEqual(sent.spanId, PARENT)
    assert.equal(sent.sampled, true, 'the caller sampled it, whatever our own rate says')
    assert.equal(edits(exchange).tracestate, undefined, 'tracestate passes through untouched')
    exchange.upstream = 'local'
    exchange.endpoint = 'http://127.0.0.1:1'
    exchange.attempts = 2
    exchange.upstreamMs = 3.5
    tracer.onResponse(recordOf(exchange, 200))
    assert.equal(spans.length, 1)
    const span = spans[0]!
    assert.equal(span.traceId, TRACE)
    assert.equal(span.spanId, sent.spanId)
    assert.equal(span.parentSpanId, PARENT)
    assert.equal(span.name, 'GET /api/*')
    assert.equal(span.kind, SPAN_KIND.server)
    assert.deepEqual(span.status, { code: STATUS_CODE.unset })
    assert.equal(span.endMs - span.startMs, 12.5)
    const attributes = Object.fromEntries(span.attributes)
    assert.equal(attributes['http.request.method'], 'GET')
    assert.equal(attributes['http.route'], '/api/*')
    assert.equal(attributes['http.response.status_code'], 200)
    assert.equal(attributes['url.path'], '/api/x')
    assert.equal(attributes['server.address'], 'gw')
    assert.equal(attributes['client.address'], '10.1.2.3')
    assert.equal(attributes['pillion.attempts'], 2)
    assert.equal(attributes['pillion.endpoint'], 'http://127.0.0.1:1')
    assert.equal(tracer.contextOf(exchange)?.traceId, TRACE)
  })

  test("a caller's not-sampled flag wins too: propagated, not exported", () => {
    const { tracer, spans } = tracerWith(0)
    const exchange = exchangeFor('api', { traceparent: `00-${TRACE}-${PARENT}-00` })
    tracer.onRequest(exchange)
    assert.equal(parseTraceparent(edits(exchange).traceparent!)!.sampled, false)
    tracer.onResponse(recordOf(exchange, 200))
    assert.equal(spans.length, 0)
  })

  test('a trace that starts here is sampled at the configured rate', () => {
    const sampled = tracerWith(0.49)
    const first = exchangeFor('api')
    sampled.tracer.onRequest(first)
    const sent = parseTraceparent(edits(first).traceparent!)!
    assert.equal(sent.sampled, true)
    sampled.tracer.onResponse(recordOf(first, 200))
    assert.equal(sampled.spans[0]!.parentSpanId, undefined)
    assert.equal(sampled.spans[0]!.traceId, sent.traceId)

    const unsampled = tracerWith(0.5)
    const second = exchangeFor('api')
    unsampled.tracer.onRequest(second)
    assert.equal(parseTraceparent(edits(second).traceparent!)!.sampled, false)
    unsampled.tracer.onResponse(recordOf(second, 200))
    assert.equal(unsampled.spans.length, 0)
  })

  test('b3 callers get b3 upstream as well, with our span id', () => {
    const { tracer } = tracerWith(0.99)
    const exchange = exchangeFor('api', { b3: `${TRACE}-${PARENT}-1` })
    tracer.onRequest(exchange)
    assert.equal(edits(exchange).b3, `${TRACE}-${parseTraceparent(edits(exchange).traceparent!)!.spanId}-1`)
    const plain = exchangeFor('api')
    tracer.onRequest(plain)
    assert.equal(edits(plain).b3, undefined)
  })

  test('egress routes make CLIENT spans; errors set status and error.type', () => {
    const { tracer, spans } = tracerWith(0)
    const server = exchangeFor('api', { traceparent: `00-${TRACE}-${PARENT}-01` })
    tracer.onRequest(server)
    tracer.onResponse(recordOf(server, 502, 'upstream_unavailable'))
    const client = exchangeFor('out', { traceparent: `00-${TRACE}-${PARENT}-01` })
    tracer.onRequest(client)
    tracer.onResponse(recordOf(client, 404))
    const [serverSpan, clientSpan] = spans
    assert.deepEqual(serverSpan!.status, { code: STATUS_CODE.error, message: 'upstream_unavailable' })
    assert.equal(Object.fromEntries(serverSpan!.attributes)['error.type'], 'upstream_unavailable')
    assert.equal(clientSpan!.kind, SPAN_KIND.client)
    assert.equal(clientSpan!.status.code, STATUS_CODE.error, 'a client span fails from 4xx')
    assert.equal(Object.fromEntries(clientSpan!.attributes)['error.type'], '404')
  })
})



function span(n: number): FinishedSpan {
  return {
    traceId: TRACE,
    spanId: n.toString(16).padStart(16, '0'),
    parentSpanId: undefined,
    name: 'GET /api/*',
    kind: SPAN_KIND.server,
    startMs: 1000.5,
    endMs: 1002,
    attributes: [['http.response.status_code', 200], ['pillion.route', 'api']],
    status: { code: STATUS_CODE.unset },
  }
}

function exporterWith(settings: Partial<TracesConfig>, answer: (request: UpstreamRequest) => Promise<Response>) {
  const timers = fakeTimers()
  const logger = recordingLogger()
  const counts = { exported: 0, dropped: new Map<string, number>() }
  const bodies: any[] = []
  const exporter = new OtlpExporter(
    { ...TRACES, headers: [['authorization', 'Bearer t']], ...settings },
    {
      send: async (request) => {
        bodies.push({ headers: request.headers, json: JSON.parse(new TextDecoder().decode(request.body as Uint8Array)) })
        return answer(request)
      },
      logger,
      version: '9.9.9',
      exported: (count) => (counts.exported += count),
      dropped: (count, reason) => counts.dropped.set(reason, (counts.dropped.get(reason) ?? 0) + count),
      setTimer: timers.setTimer,
      clearTimer: timers.clearTimer,
    },
  )
  return { exporter, timers, logger, counts, bodies }
}

/** An exporter whose collector answers 200 only once release() is called: for spans queued during a send. */
function heldExporter() {
  let release!: () => void
  const held = new Promise<void>((resolve) => (release = resolve))
  const t = exporterWith({}, async () => {
    await held
    return new Response('{}')
  })
  return { ...t, release }
}

describe('OTLP exporter', () => {
  test('waits for the flush timer, then sends one OTLP/JSON request with the batch', async () => {
    const t = exporterWith({}, async () => new Response('{}'))
    t.exporter.enqueue(span(1))
    t.exporter.enqueue(span(2))
    assert.equal(t.bodies.length, 0, 'nothing is sent on the request path')
    assert.equal(t.timers.count, 1)
    t.timers.fire()
    await t.exporter.flush()
    assert.equal(t.bodies.length, 1)
    assert.equal(t.bodies[0].headers.get('content-type'), 'application/json')
    assert.equal(t.bodies[0].headers.get('authorization'), 'Bearer t')
    const { resourceSpans } = t.bodies[0].json
    assert.deepEqual(resourceSpans[0].resource.attributes[0], { key: 'service.name', value: { stringValue: 'orders' } })
    assert.deepEqual(resourceSpans[0].scopeSpans[0].scope, { name: 'pillion', version: '9.9.9' })
    const [first] = resourceSpans[0].scopeSpans[0].spans
    assert.equal(first.traceId, TRACE)
    assert.equal(first.parentSpanId, undefined)
    assert.equal(first.startTimeUnixNano, '1000500000')
    assert.deepEqual(first.attributes[0], { key: 'http.response.status_code', value: { intValue: '200' } })
    assert.equal(t.counts.exported, 2)
  })

  test('a full batch goes at once, without waiting for the timer', async () => {
    const t = exporterWith({}, async () => new Response('{}'))
    for (let i = 0; i < MAX_BATCH; i++) t.exporter.enqueue(span(i + 1))
    assert.equal(t.timers.count, 0)
    await t.exporter.flush()
    assert.equal(t.bodies.length, 1)
    assert.equal(t.bodies[0].json.resourceSpans[0].scopeSpans[0].spans.length, MAX_BATCH)
  })

  test('spans past a full batch, and spans queued while it is sent, go in the next request, in order', async () => {
    const t = heldExporter()
    for (let i = 0; i < MAX_BATCH + 2; i++) t.exporter.enqueue(span(i + 1))
    t.exporter.enqueue(span(MAX_BATCH + 3))
    assert.equal(t.exporter.queued, 3, 'the full batch is out; three wait')
    t.release()
    await t.exporter.flush()
    const ids = t.bodies.map((body) => body.json.resourceSpans[0].scopeSpans[0].spans.map((each: { spanId: string }) => parseInt(each.spanId, 16)))
    assert.deepEqual(ids.map((list) => list.length), [MAX_BATCH, 3])
    assert.deepEqual(ids.flat(), Array.from({ length: MAX_BATCH + 3 }, (_, i) => i + 1))
    assert.equal(t.counts.exported, MAX_BATCH + 3)
    assert.equal(t.exporter.queued, 0)
  })

  test('a flush with nothing queued sends nothing (shutdown, reload)', async () => {
    const t = exporterWith({}, async () => new Response('{}'))
    await t.exporter.flush()
    t.exporter.enqueue(span(1))
    await t.exporter.flush()
    await t.exporter.flush()
    assert.equal(t.bodies.length, 1)
    assert.equal(t.counts.exported, 1)
  })

  test('the queue is bounded: spans beyond max_queue are dropped and counted', async () => {
    const t = exporterWith({ maxQueue: 3 }, async () => new Response('{}'))
    for (let i = 0; i < 5; i++) t.exporter.enqueue(span(i + 1))
    assert.equal(t.exporter.queued, 3)
    assert.equal(t.counts.dropped.get('queue_full'), 2)
  })

  test('a failing collector drops its batch, counts it, and is logged once per reason', async () => {
    const t = exporterWith({}, async () => new Response('no', { status: 503 }))
    t.exporter.enqueue(span(1))
    await t.exporter.flush()
    t.exporter.enqueue(span(2))
    await t.exporter.flush()
    assert.equal(t.counts.dropped.get('export_failed'), 2)
    assert.equal(t.counts.exported, 0)
    assert.deepEqual(t.logger.lines, ['trace export failed; dropping spans'])
    assert.equal(t.exporter.queued, 0)
  })

  test('spans that arrive during an export go in the next request', async () => {
    const t = heldExporter()
    t.exporter.enqueue(span(1))
    const flushing = t.exporter.flush()
    t.exporter.enqueue(span(2))
    t.release()
    await flushing
    assert.equal(t.bodies.length, 2)
    assert.equal(t.counts.exported, 2)
  })

  test('nanosecond timestamps stay exact past 2^53', () => {
    assert.equal(unixNanos(1_700_000_000_123.5), '1700000000123500000')
  })
})

describe('[observability.traces] config', () => {
  test('defaults: 1% sampling, the service name, 5s flush, 2048 spans', () => {
    const config = loadConfigText(
      `[gateway]\nservice = "svc"\n[listeners.in]\nlisten = "127.0.0.1:0"\ndirection = "ingress"\n[observability.traces]\notlp = "http://127.0.0.1:4318/v1/traces"\n`,
      'x.toml',
    )
    assert.deepEqual(config.observability!.traces, {
      otlp: 'http://127.0.0.1:4318/v1/traces',
      sample: 0.01,
      serviceName: 'svc',
      headers: [],
      flushMs: 5000,
      maxQueue: 2048,
    })
  })

  test('bad values are reported with their key path', () => {
    const base = `[gateway]\nservice = "svc"\n[listeners.in]\nlisten = "127.0.0.1:0"\ndirection = "ingress"\n`
    assert.deepEqual(rejection(`${base}[observability.traces]\notlp = "ftp://x"\nsample = 2\n`).map((p) => p.path), [
      'observability.traces.otlp',
      'observability.traces.sample',
    ])
    assert.deepEqual(rejection(`${base}[observability.traces]\nsample = 0.1\n`).map((p) => p.path), ['observability.traces.otlp'])
  })
})
