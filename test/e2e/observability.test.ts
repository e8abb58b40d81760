import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { closedPort, deferred, readBody, request, startGateway, startUpstream, targets, tempDir, type Gateway, type Upstream } from './harness.ts'
import { samples } from '../prometheus-text.ts'

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
const CALLER_SPAN = '00f067aa0ba902b7'

interface OtlpSpan {
  traceId: string
  spanId: string
  parentSpanId?: string
  name: string
  kind: number
  startTimeUnixNano: string
  endTimeUnixNano: string
  attributes: Array<{ key: string; value: Record<string, unknown> }>
  status: { code: number; message?: string }
}

/** A small OTLP/HTTP receiver: collects every span and resolves waiters when a span they want arrives. */
async function startCollector() {
  const spans: OtlpSpan[] = []
  const requests: Array<{ contentType: string | undefined; service: string }> = []
  const waiters: Array<{ match: (span: OtlpSpan) => boolean; resolve: (span: OtlpSpan) => void }> = []
  const server = await startUpstream(async (req: IncomingMessage, res: ServerResponse) => {
    const body = JSON.parse((await readBody(req)).toString())
    for (const resourceSpans of body.resourceSpans) {
      const service = resourceSpans.resource.attributes.find((a: { key: string }) => a.key === 'service.name').value.stringValue
      requests.push({ contentType: req.headers['content-type'], service })
      for (const scope of resourceSpans.scopeSpans) {
        for (const span of scope.spans as OtlpSpan[]) {
          spans.push(span)
          for (const waiter of [...waiters]) {
            if (waiter.match(span)) {
              waiters.splice(waiters.indexOf(waiter), 1)
              waiter.resolve(span)
            }
          }
        }
      }
    }
    res.setHeader('content-type', 'application/json')
    res.end('{}')
  })
  return {
    server,
    spans,
    requests,
    /** The first span (already received or still to come) that matches. */
    span(match: (span: OtlpSpan) => boolean): Promise<OtlpSpan> {
      const seen = spans.find(match)
      if (seen !== undefined) return Promise.resolve(seen)
      return new Promise((resolve) => waiters.push({ match, resolve }))
    },
  }
}

const attribute = (span: OtlpSpan, key: string) => {
  const value = span.attributes.find((a) => a.key === key)?.value
  return value === undefined ? undefined : Object.values(value)[0]
}

function policy(upstream: Upstream, collector: string, refusedPort: number, extraRoute = ''): string {
  return `
[gateway]
service = "orders"
admin = "127.0.0.1:0"

[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"

[listeners.egress]
listen = "127.0.0.1:0"
direction = "egress"

[upstreams.local]
endpoints = ["${upstream.url}"]

[upstreams.refused]
endpoints = ["http://127.0.0.1:${refusedPort}"]

[[routes]]
name = "api"
listener = "ingress"
path = "/api/*"
upstream = "local"

[[routes]]
name = "held"
listener = "ingress"
path = "/held"
upstream = "local"

[[routes]]
name = "refused"
listener = "ingress"
path = "/refused"
upstream = "refused"

[[routes]]
name = "out"
listener = "egress"
path = "/out/*"
upstream = "local"
${extraRoute}
[observability.traces]
otlp = "${collector}/v1/traces"
sample = 1.0
flush = "50ms"
`
}

for (const target of targets()) {
  describe(`observability on ${target.name}`, { skip: target.missing }, () => {
    let upstream: Upstream
    let collector: Awaited<ReturnType<typeof startCollector>>
    let gateway: Gateway
    let ingress: string
    let egress: string
    let refusedPort: number
    let release = deferred()
    const arrived = { held: deferred() }

    before(async () => {
      upstream = await startUpstream(async (req, res) => {
        if (req.url === '/held') {
          arrived.held.resolve()
          await release.promise
        }
        res.setHeader('content-type', 'application/json')
        res.end(JSON.stringify({ url: req.url, traceparent: req.headers.traceparent ?? null, b3: req.headers.b3 ?? null, tracestate: req.headers.tracestate ?? null }))
      })
      collector = await startCollector()
      refusedPort = await closedPort()
      gateway = await startGateway(target, policy(upstream, collector.server.url, refusedPort))
      ingress = gateway.listeners.ingress!
      egress = gateway.listeners.egress!
    })

    after(async () => {
      release.resolve()
      const code = await gateway?.stop()
      await upstream?.close()
      await collector?.server.close()
      assert.equal(code, 0, `gateway exit code; stderr:\n${gateway?.stderr.join('\n')}`)
    })

    it('serves Prometheus text on /metrics, by route, method, status class and code, with bounded labels', async () => {
      for (let i = 0; i < 3; i++) assert.equal((await request(`${ingress}/api/unique-path-${i}?q=secret`)).status, 200)
      assert.equal((await request(`${ingress}/refused`)).status, 502)
      assert.equal((await request(`${ingress}/nowhere-${Date.now()}`)).status, 404)
      const reply = await request(`${gateway.admin}/metrics`)
      assert.equal(reply.status, 200)
      assert.equal(reply.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8')
      const text = reply.body.toString()
      const s = samples(text)
      assert.equal(s.get('pillion_requests_total{route="api",method="GET",status_class="2xx",code="200"}'), 3)
      assert.equal(s.get('pillion_requests_total{route="refused",method="GET",status_class="5xx",code="502"}'), 1)
      assert.equal(s.get('pillion_request_errors_total{route="refused",error="upstream_unavailable"}'), 1)
      assert.equal(s.get('pillion_request_errors_total{route="-",error="no_route"}'), 1)
      assert.equal(s.get('pillion_request_duration_seconds_count{route="api",status_class="2xx"}'), 3)
      assert.equal(s.get('pillion_request_duration_seconds_bucket{route="api",status_class="2xx",le="+Inf"}'), 3)
      assert.equal(s.get('pillion_upstream_duration_seconds_count{route="api",upstream="local"}'), 3)
      assert.equal(s.get(`pillion_endpoint_healthy{upstream="local",endpoint="${upstream.url}"}`), 1)
      assert.equal(s.get(`pillion_build_info{version="0.1.0",runtime="${target.name === 'binary' ? 'bun' : target.name}"}`), 1)
      // The runtime's own reading of this process: a resident size and a heap, whatever the engine.
      assert.ok(s.get('process_resident_memory_bytes')! > 10 * 2 ** 20, `process_resident_memory_bytes ${s.get('process_resident_memory_bytes')}`)
      assert.ok(s.get('pillion_heap_used_bytes')! > 0 && s.get('pillion_heap_total_bytes')! > 0, 'the JS heap gauges')
      assert.ok(!text.includes('unique-path') && !text.includes('nowhere') && !text.includes('secret'), 'no raw path or query in any label')
    })

    it('answers OpenMetrics when the scraper asks for it', async () => {
      const reply = await request(`${gateway.admin}/metrics`, { headers: { accept: 'application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5' } })
      assert.equal(reply.headers['content-type'], 'application/openmetrics-text; version=1.0.0; charset=utf-8')
      const text = reply.body.toString()
      assert.match(text, /^# TYPE pillion_requests counter$/m)
      assert.match(text, /^pillion_requests_total\{route="api",/m)
      assert.ok(text.endsWith('# EOF\n'))
    })

    it('counts requests in flight', async () => {
      const pending = request(`${ingress}/held`)
      await arrived.held.promise
      const s = samples((await request(`${gateway.admin}/metrics`)).body.toString())
      assert.equal(s.get('pillion_requests_in_flight{route="held"}'), 1)
      release.resolve()
      assert.equal((await pending).status, 200)
    })

    it('continues the caller trace upstream with its own span id, and exports that span with its parent link', async () => {
      const reply = await request(`${ingress}/api/traced`, {
        headers: { traceparent: `00-${TRACE}-${CALLER_SPAN}-01`, tracestate: 'congo=t61rcWkgMzE', 'x-request-id': 'trace-me-1' },
      })
      const seen = reply.json()
      const [, traceId, parentId, flags] = seen.traceparent.split('-')
      assert.equal(traceId, TRACE)
      assert.notEqual(parentId, CALLER_SPAN, 'our own span is the upstream call parent')
      assert.equal(flags, '01')
      assert.equal(seen.tracestate, 'congo=t61rcWkgMzE')
      const span = await collector.span((s) => s.spanId === parentId)
      assert.equal(span.traceId, TRACE)
      assert.equal(span.parentSpanId, CALLER_SPAN)
      assert.equal(span.name, 'GET /api/*')
      assert.equal(span.kind, 2, 'SERVER on an ingress listener')
      assert.equal(span.status.code, 0)
      assert.equal(attribute(span, 'http.request.method'), 'GET')
      assert.equal(attribute(span, 'http.route'), '/api/*')
      assert.equal(attribute(span, 'url.path'), '/api/traced')
      assert.equal(attribute(span, 'http.response.status_code'), '200')
      assert.equal(attribute(span, 'pillion.request_id'), 'trace-me-1')
      assert.equal(attribute(span, 'pillion.endpoint'), upstream.url)
      assert.ok(BigInt(span.endTimeUnixNano) > BigInt(span.startTimeUnixNano))
      assert.equal(collector.requests[0]!.contentType, 'application/json')
      assert.equal(collector.requests[0]!.service, 'orders')
    })

    it('starts a trace when the caller sent none; accepts B3; marks failures and egress spans', async () => {
      const fresh = (await request(`${ingress}/api/fresh`)).json()
      const [, freshTrace, freshSpan] = fresh.traceparent.split('-')
      const root = await collector.span((s) => s.spanId === freshSpan)
      assert.equal(root.traceId, freshTrace)
      assert.equal(root.parentSpanId ?? '', '')

      const b3 = (await request(`${egress}/out/b3`, { headers: { b3: `${TRACE}-${CALLER_SPAN}-1` } })).json()
      const [, b3Trace, b3Span] = b3.traceparent.split('-')
      assert.equal(b3Trace, TRACE)
      assert.equal(b3.b3, `${TRACE}-${b3Span}-1`)
      const client = await collector.span((s) => s.spanId === b3Span)
      assert.equal(client.kind, 3, 'CLIENT on an egress listener')
      assert.equal(client.parentSpanId, CALLER_SPAN)

      assert.equal((await request(`${ingress}/refused`, { headers: { traceparent: `00-${TRACE}-${CALLER_SPAN}-01` } })).status, 502)
      const failed = await collector.span((s) => attribute(s, 'http.route') === '/refused')
      assert.deepEqual(failed.status, { code: 2, message: 'upstream_unavailable' })
      assert.equal(attribute(failed, 'error.type'), 'upstream_unavailable')
    })

    it('writes one JSON access log line per request to stdout, with ids, route, endpoint, status, bytes, durations and retries', async () => {
      await request(`${ingress}/api/logged`, { headers: { 'x-request-id': 'log-me-1', traceparent: `00-${TRACE}-${CALLER_SPAN}-01` } })
      const line = JSON.parse(await gateway.waitForLine(/"request_id":"log-me-1"/))
      assert.equal(line.trace_id, TRACE)
      assert.equal(line.route, 'api')
      assert.equal(line.method, 'GET')
      assert.equal(line.path, '/api/logged')
      assert.equal(line.status, 200)
      assert.equal(line.upstream, 'local')
      assert.equal(line.endpoint, upstream.url)
      assert.equal(line.retries, 0)
      assert.ok(line.bytes_out > 0)
      assert.equal(typeof line.duration_ms, 'number')
      assert.equal(typeof line.upstream_ms, 'number')
      assert.equal(line.code, undefined)
      await request(`${ingress}/refused`, { headers: { 'x-request-id': 'log-me-2' } })
      const failed = JSON.parse(await gateway.waitForLine(/"request_id":"log-me-2"/))
      assert.equal(failed.status, 502)
      assert.equal(failed.code, 'upstream_unavailable')
      assert.ok(!gateway.stderr.some((l) => l.includes('"request_id":"log-me-1"')), 'access lines stay off stderr')
    })

    it('keeps counting across a config reload, and reports the reload and the new config hash', async () => {
      const before = samples((await request(`${gateway.admin}/metrics`)).body.toString())
      const apiBefore = before.get('pillion_requests_total{route="api",method="GET",status_class="2xx",code="200"}')!
      assert.ok(apiBefore >= 3)
      const { source } = (await request(`${gateway.admin}/config`)).json()
      const extra = `\n[[routes]]\nname = "added"\nlistener = "ingress"\npath = "/added"\nupstream = "local"\n`
      writeFileSync(source, policy(upstream, collector.server.url, refusedPort, extra))
      const outcome = await request(`${gateway.admin}/reload`, { method: 'POST' })
      assert.equal(outcome.status, 200, outcome.body.toString())
      assert.equal((await request(`${ingress}/api/after-reload`)).status, 200)
      assert.equal((await request(`${ingress}/added`)).status, 200)
      const { version } = (await request(`${gateway.admin}/config/status`)).json()
      const s = samples((await request(`${gateway.admin}/metrics`)).body.toString())
      assert.equal(s.get('pillion_requests_total{route="api",method="GET",status_class="2xx",code="200"}'), apiBefore + 1)
      assert.equal(s.get('pillion_requests_total{route="added",method="GET",status_class="2xx",code="200"}'), 1)
      assert.equal(s.get('pillion_config_reloads_total{result="success"}'), 1)
      assert.equal(s.get(`pillion_config_info{hash="${version}"}`), 1)
      assert.equal([...s.keys()].filter((key) => key.startsWith('pillion_config_info')).length, 1)
      // The tracer and exporter outlive the reload too.
      const traced = (await request(`${ingress}/added`)).json()
      const span = await collector.span((candidate) => candidate.spanId === traced.traceparent.split('-')[2])
      assert.equal(span.name, 'GET /added')
    })
  })

  describe(`access log to a file on ${target.name}`, { skip: target.missing }, () => {
    let upstream: Upstream
    let gateway: Gateway
    let dir: string

    before(async () => {
      upstream = await startUpstream((_req, res) => res.end('ok'))
      dir = tempDir()
      gateway = await startGateway(
        target,
        `
[gateway]
service = "orders"
admin = "127.0.0.1:0"
[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"
[upstreams.local]
endpoints = ["${upstream.url}"]
[[routes]]
name = "api"
listener = "ingress"
path = "/*"
upstream = "local"
[observability.access_log]
to = "${join(dir, 'access.log')}"
fields = ["request_id", "status", "route", "bytes_out", "user_agent"]
`,
      )
    })

    after(async () => {
      await upstream?.close()
    })

    it('appends the chosen fields, and writes what is buffered before exiting', async () => {
      for (let i = 0; i < 5; i++) await request(`${gateway.listeners.ingress}/x`, { headers: { 'x-request-id': `file-${i}`, 'user-agent': 'probe/1' } })
      assert.equal(await gateway.stop(), 0, gateway.stderr.join('\n'))
      const lines = readFileSync(join(dir, 'access.log'), 'utf8').trim().split('\n').map((line) => JSON.parse(line))
      assert.deepEqual(
        lines.map((line) => line.request_id),
        ['file-0', 'file-1', 'file-2', 'file-3', 'file-4'],
      )
      assert.deepEqual(lines[0], { request_id: 'file-0', status: 200, route: 'api', bytes_out: 2, user_agent: 'probe/1' })
      assert.ok(!gateway.stdout.some((line) => line.includes('file-0')), 'nothing on stdout when the log goes to a file')
    })
  })
}
