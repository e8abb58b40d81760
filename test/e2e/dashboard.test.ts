// The admin dashboard in a real browser: headless Chromium (Debian's `chromium`, driven by
// playwright-core) opens GET /, traffic runs, and the page must show the numbers /metrics reports.
// It tests the page, not the runtime, so it runs against one target only.
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import { closedPort, deferred, request, startGateway, startUpstream, targets, type Gateway, type Upstream } from './harness.ts'
import { samples } from '../prometheus-text.ts'

const CHROMIUM = '/usr/bin/chromium'
const LAUNCH_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

type Playwright = typeof import('playwright-core')
let playwright: Playwright | undefined
try {
  playwright = await import('playwright-core')
} catch {
  playwright = undefined
}

const target = targets().find((candidate) => candidate.missing === undefined)
const missing = !existsSync(CHROMIUM)
  ? `Chromium is not installed at ${CHROMIUM} (apt-get install chromium; .ci/run does this)`
  : playwright === undefined
    ? 'playwright-core is not installed (npm install)'
    : target === undefined
      ? 'no runnable target (npm run build)'
      : undefined

describe(`dashboard${target ? ` on ${target.name}` : ''}`, { skip: missing }, () => {
  let upstream: Upstream
  let gateway: Gateway
  let browser: Awaited<ReturnType<Playwright['chromium']['launch']>>
  const release = deferred()
  const held = deferred()

  before(async () => {
    upstream = await startUpstream(async (req, res) => {
      if (req.url === '/held') {
        held.resolve()
        await release.promise
      }
      res.end('ok')
    })
    gateway = await startGateway(
      target!,
      `
[gateway]
service = "orders"
admin = "127.0.0.1:0"
[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"
[upstreams.local]
endpoints = ["${upstream.url}"]
[upstreams.down]
endpoints = ["http://127.0.0.1:${await closedPort()}"]
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
[routes.bulkhead]
max_concurrent = 2
[[routes]]
name = "flaky"
listener = "ingress"
path = "/flaky"
upstream = "down"
[routes.circuit_breaker]
min_requests = 2
failure_rate = 0.5
open_for = "10m"
[observability.access_log]
to = "off"
`,
    )
    browser = await playwright!.chromium.launch({ executablePath: CHROMIUM, args: LAUNCH_ARGS })
  })

  after(async () => {
    release.resolve()
    await browser?.close()
    await gateway?.stop()
    await upstream?.close()
  })

  it('shows per-route totals, latency, error codes, breaker state, bulkhead occupancy and endpoint health as /metrics has them', async () => {
    const page = await browser.newPage()
    await page.goto(`${gateway.admin}/`)
    assert.equal(await page.title(), 'Pillion')
    const ingress = gateway.listeners.ingress!
    for (let i = 0; i < 5; i++) assert.equal((await request(`${ingress}/api/x`)).status, 200)
    const flaky = []
    for (let i = 0; i < 3; i++) flaky.push((await request(`${ingress}/flaky`)).status)
    assert.deepEqual(flaky, [502, 502, 503], 'two failures open the breaker; the third is refused')
    assert.equal((await request(`${ingress}/nowhere`)).status, 404)
    const pending = request(`${ingress}/held`)
    await held.promise

    const metrics = samples((await request(`${gateway.admin}/metrics`)).body.toString())
    const total = (route: string) =>
      [...metrics].filter(([key]) => key.startsWith(`pillion_requests_total{route="${route}",`)).reduce((sum, [, value]) => sum + value, 0)
    const expected = {
      api: String(total('api')),
      flaky: String(total('flaky')),
      noRoute: String(total('-')),
      unavailable: String(metrics.get('pillion_request_errors_total{route="flaky",error="upstream_unavailable"}')),
      circuitOpen: String(metrics.get('pillion_request_errors_total{route="flaky",error="circuit_open"}')),
      breaker: metrics.get('pillion_breaker_state{route="flaky",upstream="down",state="open"}') === 1 ? 'open' : 'not open',
      bulkheadActive: String(metrics.get('pillion_bulkhead_active{route="held"}')),
      inFlight: String(metrics.get('pillion_requests_in_flight{route="held"}')),
      endpoint: metrics.get(`pillion_endpoint_healthy{upstream="local",endpoint="${upstream.url}"}`) === 1 ? 'healthy' : 'unhealthy',
    }
    assert.deepEqual(expected, {
      api: '5',
      flaky: '3',
      noRoute: '1',
      unavailable: '2',
      circuitOpen: '1',
      breaker: 'open',
      bulkheadActive: '1',
      inFlight: '1',
      endpoint: 'healthy',
    })

    // What the page shows, read from the DOM. The page polls /stats every second, so wait for it to
    // catch up. Page-side code goes as text: tsx would wrap a function in helpers the page lacks.
    const shown = `(() => {
      const text = (selector) => document.querySelector(selector)?.textContent ?? null
      return {
        api: text('[data-route="api"] [data-field="requests"]'),
        flaky: text('[data-route="flaky"] [data-field="requests"]'),
        noRoute: text('[data-route="-"] [data-field="requests"]'),
        unavailable: text('[data-error="flaky/upstream_unavailable"] [data-field="count"]'),
        circuitOpen: text('[data-error="flaky/circuit_open"] [data-field="count"]'),
        breaker: text('[data-breaker="flaky/down"] [data-field="state"]') === 'open' ? 'open' : 'not open',
        bulkheadActive: text('[data-bulkhead="held"] [data-field="active"]'),
        inFlight: text('[data-route="held"] [data-field="inflight"]'),
        endpoint: text('[data-endpoint="local ${upstream.url}"] [data-field="health"]'),
      }
    })()`
    await page
      .waitForFunction(`JSON.stringify(${shown}) === ${JSON.stringify(JSON.stringify(expected))}`, undefined, { timeout: 20_000 })
      .catch(async () => assert.deepEqual(await page.evaluate(shown), expected, 'the page never caught up with /metrics'))
    assert.deepEqual(await page.evaluate(shown), expected)

    // Latency percentiles come from the same histogram.
    assert.match((await page.textContent('[data-route="api"] [data-field="p50"]'))!, /^\d+(\.\d+)? (ms|s)$/)

    // The rate and latency charts draw once two polls have seen the traffic.
    release.resolve()
    assert.equal((await pending).status, 200)
    for (let i = 0; i < 3; i++) await request(`${ingress}/api/y`)
    await page.waitForFunction(`document.querySelectorAll('[data-route="api"] svg polyline').length >= 2`, undefined, { timeout: 20_000 })
    await page.close()
  })
})
