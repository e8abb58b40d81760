import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { loadConfigText } from '../../../src/config/load.ts'
import { AccessLog, LineWriter } from '../../../src/observability/access-log.ts'
import { ACCESS_LOG_FIELDS, DEFAULT_ACCESS_LOG_FIELDS, defaultObservability } from '../../../src/observability/config.ts'
import type { RequestRecord } from '../../../src/observability/observer.ts'
import { Exchange } from '../../../src/proxy/exchange.ts'
import type { AppendSink } from '../../../src/core/host.ts'
import { ONE_ROUTE, rejection } from '../fakes/policy-text.ts'
import { fakeTimers, recordingLogger } from './flush-fakes.ts'

const TRACE = '0af7651916cd43dd8448eb211c80319c'

function recordWith(overrides: Partial<RequestRecord> = {}, headers: Record<string, string> = {}): RequestRecord {
  const request = new Request('http://gw/api/x?page=2', { method: 'POST', headers: { host: 'gw', 'user-agent': 'ua/1', 'content-length': '5', ...headers }, body: 'hello' })
  const exchange = new Exchange(request, { remoteAddress: '10.0.0.9' }, 'req-7', '/api/x', '?page=2', 0)
  exchange.route = 'api'
  exchange.upstream = 'local'
  exchange.endpoint = 'http://127.0.0.1:3000'
  exchange.attempts = 3
  exchange.upstreamMs = 1.23456
  return {
    requestId: 'req-7',
    route: 'api',
    method: 'POST',
    path: '/api/x',
    status: 502,
    code: 'upstream_unavailable',
    startedAt: Date.UTC(2030, 0, 2, 3, 4, 5, 6),
    durationMs: 9.87654,
    bytesOut: 77,
    clientAddress: '10.0.0.9',
    exchange,
    request,
    ...overrides,
  }
}

class MemorySink implements AppendSink {
  writes: string[] = []
  closed = false
  pending: Array<() => void> = []
  /** When set, each write waits until the test releases it. */
  hold = false
  fail: string | undefined

  #written: Array<() => void> = []

  /** Resolves at the next write. */
  nextWrite(): Promise<void> {
    return new Promise((resolve) => this.#written.push(resolve))
  }

  write(bytes: Uint8Array): Promise<void> {
    if (this.fail !== undefined) return Promise.reject(new Error(this.fail))
    this.writes.push(new TextDecoder().decode(bytes))
    for (const wake of this.#written.splice(0)) wake()
    if (!this.hold) return Promise.resolve()
    return new Promise((resolve) => this.pending.push(resolve))
  }

  async close(): Promise<void> {
    this.closed = true
  }

  get lines(): string[] {
    return this.writes.join('').split('\n').filter(Boolean)
  }
}



function writerFor(sink: AppendSink, options: { maxPendingBytes?: number; flushBytes?: number } = {}) {
  const timers = fakeTimers()
  const log = recordingLogger()
  const dropped = { count: 0 }
  const writer = new LineWriter(sink, { ...options, logger: log, dropped: (n) => (dropped.count += n), setTimer: timers.setTimer, clearTimer: timers.clearTimer })
  return { writer, timers, log, dropped }
}

describe('access log lines', () => {
  test('the default fields: ids, route, endpoint, status, code, bytes, durations, retries', () => {
    const sink = new MemorySink()
    const log = new AccessLog({ to: 'stdout', fields: [...DEFAULT_ACCESS_LOG_FIELDS] }, writerFor(sink).writer)
    const line = JSON.parse(log.format(recordWith({}, { traceparent: `00-${TRACE}-b7ad6b7169203331-01` })))
    assert.deepEqual(line, {
      time: '2030-01-02T03:04:05.006Z',
      request_id: 'req-7',
      trace_id: TRACE,
      route: 'api',
      method: 'POST',
      path: '/api/x',
      status: 502,
      code: 'upstream_unavailable',
      upstream: 'local',
      endpoint: 'http://127.0.0.1:3000',
      bytes_in: 5,
      bytes_out: 77,
      duration_ms: 9.877,
      upstream_ms: 1.235,
      retries: 2,
    })
  })

  test('fields are chosen by config, in the order given; what a request lacks is left out', () => {
    const log = new AccessLog({ to: 'stdout', fields: ['status', 'client', 'user_agent', 'query', 'host', 'attempts', 'code', 'trace_id'] }, writerFor(new MemorySink()).writer)
    const line = log.format(recordWith({ code: undefined, status: 200 }))
    assert.equal(line, '{"status":200,"client":"10.0.0.9","user_agent":"ua/1","query":"page=2","host":"gw","attempts":3}')
    const unmatched = log.format(recordWith({ exchange: undefined, route: undefined, status: 404, code: 'no_route' }))
    assert.equal(unmatched, '{"status":404,"client":"10.0.0.9","user_agent":"ua/1","query":"page=2","host":"gw","code":"no_route"}')
  })

  test("the tracer's span ids win over the caller's headers", () => {
    const log = new AccessLog({ to: 'stdout', fields: ['trace_id', 'span_id'] }, writerFor(new MemorySink()).writer, () => ({ traceId: 'a'.repeat(32), spanId: 'b'.repeat(16) }))
    assert.equal(log.format(recordWith()), `{"trace_id":"${'a'.repeat(32)}","span_id":"${'b'.repeat(16)}"}`)
  })

  test('a line is exactly what JSON.stringify gives, quotes and control characters escaped, times as toISOString', () => {
    const log = new AccessLog({ to: 'stdout', fields: ['time', 'path', 'user_agent', 'duration_ms', 'status'] }, writerFor(new MemorySink()).writer)
    const times = [0, 999.9, 1000, 1_000_000_000_123.4, Date.UTC(2030, 0, 2, 3, 4, 5, 6), Date.UTC(2030, 0, 2, 3, 4, 5, 60), Date.UTC(2030, 0, 2, 3, 4, 6, 600), Date.UTC(2030, 0, 2, 3, 4, 5, 7)]
    for (const startedAt of times) {
      const record = recordWith({ startedAt, path: '/a"b\\c\n\u0001', durationMs: 1 / 3 }, { 'user-agent': 'ua "quoted" \u00e9' })
      const expected = JSON.stringify({ time: new Date(startedAt).toISOString(), path: record.path, user_agent: 'ua "quoted" \u00e9', duration_ms: 0.333, status: 502 })
      assert.equal(log.format(record), expected)
    }
    assert.equal(new AccessLog({ to: 'stdout', fields: ['fault'] }, writerFor(new MemorySink()).writer).format(recordWith()), '{}')
  })

  test('every field has a value function', () => {
    const log = new AccessLog({ to: 'stdout', fields: [...ACCESS_LOG_FIELDS] }, writerFor(new MemorySink()).writer)
    const line = JSON.parse(log.format(recordWith({ grpcStatus: 14 }, { traceparent: `00-${TRACE}-b7ad6b7169203331-01` })))
    assert.deepEqual(Object.keys(line), ACCESS_LOG_FIELDS.filter((field) => field !== 'fallback' && field !== 'fault' && field !== 'authz'))
  })

  test('authz: the rule that refused the request, by default', () => {
    const log = new AccessLog({ to: 'stdout', fields: [...DEFAULT_ACCESS_LOG_FIELDS] }, writerFor(new MemorySink()).writer)
    const record = recordWith({ status: 403, code: 'forbidden' })
    record.exchange!.authz = 'write'
    const line = JSON.parse(log.format(record))
    assert.equal(line.authz, 'write')
    assert.equal(line.code, 'forbidden')
  })
})

describe('line writer', () => {
  test('lines wait in memory for the flush timer, then go out in one write', async () => {
    const sink = new MemorySink()
    const { writer, timers } = writerFor(sink)
    writer.push('{"a":1}')
    writer.push('{"a":2}')
    assert.equal(sink.writes.length, 0, 'pushing never writes')
    assert.equal(timers.count, 1)
    timers.fire()
    await writer.flush()
    assert.deepEqual(sink.writes, ['{"a":1}\n{"a":2}\n'])
  })

  test('a flush or close with nothing buffered writes nothing', async () => {
    const sink = new MemorySink()
    const { writer } = writerFor(sink)
    await writer.flush()
    writer.push('{"a":1}')
    await writer.flush()
    await writer.close()
    assert.deepEqual(sink.writes, ['{"a":1}\n'])
  })

  test('a large buffer is written at once, without waiting for the timer', async () => {
    const sink = new MemorySink()
    const { writer, timers } = writerFor(sink, { flushBytes: 16 })
    writer.push('0123456789')
    assert.equal(sink.writes.length, 0)
    writer.push('0123456789')
    assert.equal(sink.writes.length, 1)
    assert.equal(timers.count, 0)
  })

  test('while a write is in progress lines gather for the next; past the cap they are dropped and counted', async () => {
    const sink = new MemorySink()
    sink.hold = true
    const { writer, dropped } = writerFor(sink, { maxPendingBytes: 30 })
    writer.push('first')
    const flushing = writer.flush()
    for (let i = 0; i < 10; i++) writer.push(`line-${i}`) // 7 bytes each with the newline: 4 fit in 30
    assert.equal(dropped.count, 6)
    assert.deepEqual(sink.lines, ['first'], 'one write at a time')
    sink.hold = false
    sink.pending.shift()!()
    await flushing
    assert.deepEqual(sink.lines, ['first', 'line-0', 'line-1', 'line-2', 'line-3'])
  })

  test('lines that arrive during a write wait for the next timer, unless they make a full batch', async () => {
    const sink = new MemorySink()
    const { writer, timers } = writerFor(sink, { flushBytes: 16 })
    /** The timer's write of `line`, held by the sink while `arriving` comes; the returned function lets it finish. */
    const heldWrite = (line: string, arriving: string) => {
      sink.hold = true
      writer.push(line)
      timers.fire()
      writer.push(arriving)
      return () => {
        sink.hold = false
        sink.pending.shift()!()
      }
    }
    let release = heldWrite('first', 'second')
    const timerSet = timers.nextSet()
    release()
    await timerSet
    assert.deepEqual(sink.lines, ['first'], 'a fast sink gets no small write right after the last one')
    timers.fire()
    await writer.flush()
    assert.deepEqual(sink.lines, ['first', 'second'])

    release = heldWrite('third', '0123456789abcdef')
    const written = sink.nextWrite()
    release()
    await written
    assert.deepEqual(sink.lines, ['first', 'second', 'third', '0123456789abcdef'], 'a full batch goes after the write before it')
    assert.equal(timers.count, 0)
  })

  test('a failing sink loses its batch, counted, logged once per reason; close flushes and closes', async () => {
    const sink = new MemorySink()
    sink.fail = 'disk full'
    const { writer, dropped, log } = writerFor(sink)
    writer.push('a')
    writer.push('b')
    await writer.flush()
    writer.push('c')
    await writer.flush()
    assert.equal(dropped.count, 3)
    assert.deepEqual(log.lines, ['access log write failed; dropping lines'])
    sink.fail = undefined
    writer.push('d')
    await writer.close()
    assert.deepEqual(sink.lines, ['d'])
    assert.equal(sink.closed, true)
  })
})

describe('[observability.access_log] config', () => {
  test('without the table: on, to stdout, the default fields', () => {
    assert.equal(loadConfigText(ONE_ROUTE, 'x.toml').observability, undefined)
    assert.deepEqual(defaultObservability(), { accessLog: { to: 'stdout', fields: [...DEFAULT_ACCESS_LOG_FIELDS] } })
  })

  test('a relative file is placed next to the policy file; off and stdout stay as they are', () => {
    const at = (to: string) =>
      loadConfigText(`${ONE_ROUTE}\n[observability.access_log]\nto = "${to}"\nfields = ["status"]\n`, '/etc/pillion/pillion.toml').observability!.accessLog
    assert.deepEqual(at('logs/access.log'), { to: '/etc/pillion/logs/access.log', fields: ['status'] })
    assert.equal(at('/var/log/a.log').to, '/var/log/a.log')
    assert.equal(at('off').to, 'off')
    assert.equal(at('stdout').to, 'stdout')
  })

  test('unknown fields and empty lists are refused with their key path', () => {
    assert.deepEqual(
      rejection(`${ONE_ROUTE}\n[observability.access_log]\nfields = ["status", "cookies"]\n`).map((p) => p.path),
      ['observability.access_log.fields[1]'],
    )
    assert.match(rejection(`${ONE_ROUTE}\n[observability.access_log]\nfields = []\n`)[0]!.message, /at least one field/)
    assert.match(rejection(`${ONE_ROUTE}\n[observability]\nmetrics = true\n`)[0]!.message, /unknown key "metrics"/)
  })
})
