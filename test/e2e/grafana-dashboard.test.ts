import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { closedPort, request, ROOT, startGateway, startUpstream, targets, until, type Gateway, type Upstream } from './harness.ts'

/**
 * deploy/grafana/pillion.json may only query what Pillion exports: every metric name and label in its
 * PromQL (panels, template variables, annotations, legends) is looked up in a real scrape of /metrics.
 */

const DASHBOARD = join(ROOT, 'deploy/grafana/pillion.json')

/** Labels Prometheus adds to every series of a scrape target; Pillion does not export them. */
const TARGET_LABELS = new Set(['job', 'instance'])

interface Query {
  /** Where in the dashboard: panel title and refId, variable or annotation name. */
  where: string
  expr: string
  /** Labels a legend or variable reads from the result ({{route}}, label_values(…, route)). */
  reads: string[]
}

/** Every PromQL expression of a dashboard, with where it sits. */
function dashboardQueries(dashboard: any): Query[] {
  const queries: Query[] = []
  const legendLabels = (legend: unknown) => (typeof legend === 'string' ? [...legend.matchAll(/\{\{\s*([a-zA-Z_]\w*)\s*\}\}/g)].map((m) => m[1]!) : [])
  const walk = (panels: any[] = []) => {
    for (const panel of panels) {
      for (const target of panel.targets ?? []) {
        if (typeof target.expr === 'string') queries.push({ where: `panel "${panel.title}" ${target.refId}`, expr: target.expr, reads: legendLabels(target.legendFormat) })
      }
      walk(panel.panels)
    }
  }
  walk(dashboard.panels)
  for (const variable of dashboard.templating?.list ?? []) {
    if (variable.type !== 'query') continue
    const text: string = typeof variable.query === 'string' ? variable.query : variable.query?.query ?? variable.definition
    const labelValues = /^\s*label_values\(\s*(.*?)\s*,\s*([a-zA-Z_]\w*)\s*\)\s*$/.exec(text)
    if (labelValues) queries.push({ where: `variable ${variable.name}`, expr: labelValues[1]!, reads: [labelValues[2]!] })
    else queries.push({ where: `variable ${variable.name}`, expr: text, reads: [] })
  }
  for (const annotation of dashboard.annotations?.list ?? []) {
    if (typeof annotation.expr === 'string') queries.push({ where: `annotation "${annotation.name}"`, expr: annotation.expr, reads: [] })
  }
  return queries
}

const HISTOGRAM_SUFFIX = /_(bucket|sum|count)$/

/** Metric names (histogram series as their base name) and label names a PromQL expression uses. */
function promqlUses(expr: string): { metrics: Array<{ name: string; series: string }>; labels: string[] } {
  // Label values and Grafana's [$__rate_interval] hold no names; drop them first.
  const bare = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/\[[^\]]*\]/g, '')
  const metrics = [...bare.matchAll(/\bpillion_[a-z_]+/g)].map((m) => ({ series: m[0], name: m[0].replace(HISTOGRAM_SUFFIX, '') }))
  const labels: string[] = []
  for (const braces of bare.matchAll(/\{([^}]*)\}/g)) {
    for (const matcher of braces[1]!.matchAll(/([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)\s*""/g)) labels.push(matcher[1]!)
  }
  for (const grouping of bare.matchAll(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g)) {
    labels.push(...grouping[1]!.split(',').map((label) => label.trim()).filter((label) => label !== ''))
  }
  return { metrics, labels }
}

interface Exported {
  /** Family name → its # TYPE. */
  types: Map<string, string>
  /** Family name → label names seen on its series (histograms: on _bucket/_sum/_count, le included). */
  labels: Map<string, Set<string>>
}

/** What a Prometheus text scrape exports: # TYPE lines and the series under them. */
function exportedBy(text: string): Exported {
  const types = new Map<string, string>()
  const labels = new Map<string, Set<string>>()
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line)
    if (type) {
      types.set(type[1]!, type[2]!)
      labels.set(type[1]!, labels.get(type[1]!) ?? new Set())
      continue
    }
    if (line === '' || line.startsWith('#')) continue
    const sample = /^([a-zA-Z_:][\w:]*)(\{.*\})?\s/.exec(line)
    if (!sample) continue
    const stripped = sample[1]!.replace(HISTOGRAM_SUFFIX, '')
    const family = types.get(stripped) === 'histogram' ? stripped : sample[1]!
    const seen = labels.get(family) ?? new Set<string>()
    for (const pair of (sample[2] ?? '').matchAll(/([a-zA-Z_]\w*)="(?:[^"\\]|\\.)*"/g)) seen.add(pair[1]!)
    labels.set(family, seen)
  }
  return { types, labels }
}

/** One line per metric or label a query uses that the scrape does not have. */
function dashboardProblems(queries: Query[], exported: Exported): string[] {
  const problems: string[] = []
  for (const { where, expr, reads } of queries) {
    const uses = promqlUses(expr)
    const available = new Set(TARGET_LABELS)
    for (const { name, series } of uses.metrics) {
      const type = exported.types.get(name)
      if (type === undefined) {
        problems.push(`${where}: metric ${series} is not exported by Pillion`)
        continue
      }
      if (series !== name && type !== 'histogram') problems.push(`${where}: ${series}: ${name} is a ${type}, not a histogram`)
      for (const label of exported.labels.get(name) ?? []) available.add(label)
    }
    const names = uses.metrics.map((metric) => metric.name).join(', ') || 'no metric'
    for (const label of new Set([...uses.labels, ...reads])) {
      if (!available.has(label)) problems.push(`${where}: label "${label}" is not on ${names}`)
    }
  }
  return problems
}

function policy(upstream: Upstream, refusedPort: number): string {
  return `
[gateway]
service = "dashboard-check"
admin = "127.0.0.1:0"

[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"

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
name = "limited"
listener = "ingress"
path = "/limited"
upstream = "local"
[[routes.rate_limit]]
name = "tight"
rate = "1/h"
burst = 1
key = "route"

[[routes]]
name = "flaky"
listener = "ingress"
path = "/flaky"
upstream = "refused"
retry = { attempts = 2, backoff = { base = "1ms" } }
circuit_breaker = { min_requests = 2, open_for = "60s" }

[[routes]]
name = "stingy"
listener = "ingress"
path = "/stingy"
upstream = "refused"
retry = { attempts = 2, budget = { ratio = 0.0, min_per_second = 0 } }
`
}

const target = targets().find((t) => !t.missing)

describe('the Grafana dashboard queries only what Pillion exports', { skip: target === undefined ? 'no target available' : false }, () => {
  let upstream: Upstream
  let gateway: Gateway
  let scrape: Exported
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8'))

  before(async () => {
    upstream = await startUpstream((_req, res) => res.end('ok'))
    gateway = await startGateway(target!, policy(upstream, await closedPort()))
    const ingress = gateway.listeners.ingress!
    for (let i = 0; i < 3; i++) assert.equal((await request(`${ingress}/api/${i}`)).status, 200)
    assert.equal((await request(`${ingress}/limited`)).status, 200)
    assert.equal((await request(`${ingress}/limited`)).status, 429)
    for (let i = 0; i < 4; i++) await request(`${ingress}/flaky`)
    await request(`${ingress}/stingy`)
    await request(`${ingress}/nowhere`)
    // Every family the dashboard reads has series once this traffic is counted.
    scrape = await until('a scrape with breaker rejections', async () => {
      const text = (await request(`${gateway.admin}/metrics`)).body.toString()
      return /^pillion_breaker_rejections_total\{/m.test(text) && /^pillion_retry_budget_exhausted_total\{/m.test(text) ? exportedBy(text) : undefined
    })
  })

  after(async () => {
    const code = await gateway?.stop()
    await upstream?.close()
    assert.equal(code, 0, `gateway exit code; stderr:\n${gateway?.stderr.join('\n')}`)
  })

  it('is a schemaVersion 39 dashboard on a ${datasource} Prometheus variable, with service, instance and route variables', () => {
    assert.equal(dashboard.schemaVersion, 39)
    const variables = new Map<string, any>(dashboard.templating.list.map((variable: any) => [variable.name, variable]))
    assert.equal(variables.get('datasource')?.type, 'datasource')
    assert.equal(variables.get('datasource')?.query, 'prometheus')
    for (const name of ['service', 'instance', 'route']) assert.equal(variables.get(name)?.type, 'query', `variable ${name}`)
    const datasources = new Set<string>()
    const walk = (panels: any[] = []) => {
      for (const panel of panels) {
        if (panel.type !== 'row') datasources.add(panel.datasource?.uid)
        for (const t of panel.targets ?? []) datasources.add(t.datasource?.uid)
        walk(panel.panels)
      }
    }
    walk(dashboard.panels)
    assert.deepEqual([...datasources], ['${datasource}'])
  })

  it('uses only metrics and labels found in a scrape of /metrics', () => {
    const queries = dashboardQueries(dashboard)
    assert.ok(queries.length > 20, `found ${queries.length} queries`)
    assert.deepEqual(dashboardProblems(queries, scrape), [])
  })

  it('covers what an operator looks at first', () => {
    const used = new Set(dashboardQueries(dashboard).flatMap((query) => promqlUses(query.expr).metrics.map((metric) => metric.name)))
    for (const metric of [
      'pillion_requests_total',
      'pillion_request_errors_total',
      'pillion_request_duration_seconds',
      'pillion_upstream_duration_seconds',
      'pillion_breaker_state',
      'pillion_rate_limit_decisions_total',
      'pillion_retries_total',
      'pillion_endpoint_healthy',
      'pillion_config_reloads_total',
      'pillion_websocket_connections',
    ]) {
      assert.ok(used.has(metric), `the dashboard shows ${metric}`)
    }
  })

  it('reports a made-up metric, a label a metric does not have, and a legend reading a missing label', () => {
    const broken = {
      panels: [
        {
          title: 'broken',
          targets: [
            { refId: 'A', expr: 'sum(rate(pillion_made_up_total{job=~"$service"}[$__rate_interval]))' },
            { refId: 'B', expr: 'sum by (tenant) (rate(pillion_requests_total{route=~"$route"}[5m]))' },
            { refId: 'C', expr: 'histogram_quantile(0.9, sum by (le) (rate(pillion_retries_total_bucket[5m])))' },
            { refId: 'D', expr: 'sum by (route) (pillion_requests_in_flight)', legendFormat: '{{route}} {{pod}}' },
          ],
        },
      ],
      templating: { list: [{ name: 'x', type: 'query', query: { query: 'label_values(pillion_build_info, colour)' } }] },
    }
    assert.deepEqual(dashboardProblems(dashboardQueries(broken), scrape), [
      'panel "broken" A: metric pillion_made_up_total is not exported by Pillion',
      'panel "broken" B: label "tenant" is not on pillion_requests_total',
      'panel "broken" C: pillion_retries_total_bucket: pillion_retries_total is a counter, not a histogram',
      'panel "broken" C: label "le" is not on pillion_retries_total',
      'panel "broken" D: label "pod" is not on pillion_requests_in_flight',
      'variable x: label "colour" is not on pillion_build_info',
    ])
  })
})
