/**
 * A small Prometheus registry: counters, gauges and histograms with labelled children, rendered in
 * the text exposition format 0.0.4 or OpenMetrics 1.0.
 *
 * Our own rather than prom-client: prom-client imports node:cluster, v8 and perf_hooks, which the
 * web-standard core may not (runtime.md §6.2), and its process metrics differ per runtime anyway.
 * A child is a plain object whose numbers the request path bumps directly; label values are
 * escaped and joined only when a scrape renders them, never per request.
 */

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'info'

export interface CounterChild {
  value: number
}

export interface HistogramChild {
  /** Per-bucket counts, not cumulative; the last slot is +Inf. Cumulated when rendered. */
  readonly counts: Float64Array
  sum: number
  count: number
}

/** Upper bounds in seconds for a proxy's latencies: 1 ms to 30 s. */
export const LATENCY_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/** Adds one observation; `bounds` is short, so a linear scan beats a binary search. */
export function observe(child: HistogramChild, bounds: readonly number[], value: number): void {
  let index = 0
  while (index < bounds.length && value > bounds[index]!) index++
  child.counts[index]!++
  child.sum += value
  child.count++
}

interface Series<Child> {
  labels: readonly string[]
  child: Child
}

/** One metric family: a name, its label names, and a child per distinct set of label values. */
export class Family<Child extends CounterChild | HistogramChild = CounterChild> {
  readonly name: string
  readonly help: string
  readonly type: MetricType
  readonly labelNames: readonly string[]
  readonly buckets: readonly number[] | undefined
  readonly #series = new Map<string, Series<Child>>()
  /** Gauges computed at scrape time fill the family here (breaker states, bulkhead queues). */
  collect: ((family: Family<Child>) => void) | undefined

  constructor(name: string, help: string, type: MetricType, labelNames: readonly string[], buckets?: readonly number[]) {
    this.name = name
    this.help = help
    this.type = type
    this.labelNames = labelNames
    this.buckets = buckets
  }

  /**
   * The child for these label values, made on first use. Joins the values into a key, so callers on
   * the request path keep the child they got (see metrics.ts) rather than calling this per request.
   */
  labels(...values: string[]): Child {
    const key = values.join('\u0000')
    let series = this.#series.get(key)
    if (series === undefined) {
      series = { labels: values, child: this.#newChild() }
      this.#series.set(key, series)
    }
    return series.child
  }

  /** Drops every child: for scrape-time gauges, whose label sets (routes, endpoints) come and go. */
  reset(): void {
    this.#series.clear()
  }

  series(): IterableIterator<Series<Child>> {
    return this.#series.values()
  }

  #newChild(): Child {
    if (this.type === 'histogram') return { counts: new Float64Array(this.buckets!.length + 1), sum: 0, count: 0 } as Child
    return { value: 0 } as Child
  }
}

export type Format = 'prometheus' | 'openmetrics'

export const CONTENT_TYPES: Record<Format, string> = {
  prometheus: 'text/plain; version=0.0.4; charset=utf-8',
  openmetrics: 'application/openmetrics-text; version=1.0.0; charset=utf-8',
}

/** OpenMetrics only when the scraper asks for it, as Prometheus does with scrape_protocols. */
export function negotiate(accept: string | null | undefined): Format {
  return accept?.includes('application/openmetrics-text') ? 'openmetrics' : 'prometheus'
}

export class Registry {
  readonly #families: Family<CounterChild | HistogramChild>[] = []

  counter(name: string, help: string, labelNames: readonly string[] = []): Family<CounterChild> {
    return this.#add(new Family<CounterChild>(name, help, 'counter', labelNames))
  }

  gauge(name: string, help: string, labelNames: readonly string[] = []): Family<CounterChild> {
    return this.#add(new Family<CounterChild>(name, help, 'gauge', labelNames))
  }

  /** A gauge that is always 1 and carries facts in its labels (`pillion_config_info{hash}`). */
  info(name: string, help: string, labelNames: readonly string[]): Family<CounterChild> {
    return this.#add(new Family<CounterChild>(name, help, 'info', labelNames))
  }

  histogram(name: string, help: string, labelNames: readonly string[], buckets: readonly number[]): Family<HistogramChild> {
    return this.#add(new Family<HistogramChild>(name, help, 'histogram', labelNames, buckets))
  }

  families(): readonly Family<CounterChild | HistogramChild>[] {
    return this.#families
  }

  render(format: Format = 'prometheus'): string {
    const open = format === 'openmetrics'
    const lines: string[] = []
    for (const family of this.#families) {
      family.collect?.(family as never)
      // OpenMetrics names the family without the sample suffix: counter x has samples x_total.
      let familyName = family.name
      let type: string = family.type
      if (open && family.type === 'counter') familyName = family.name.replace(/_total$/, '')
      if (open && family.type === 'info') familyName = family.name.replace(/_info$/, '')
      if (!open && family.type === 'info') type = 'gauge'
      lines.push(`# HELP ${familyName} ${escapeHelp(family.help)}`, `# TYPE ${familyName} ${type}`)
      if (family.name.endsWith('_seconds')) {
        if (open) lines.push(`# UNIT ${familyName} seconds`)
      }
      for (const { labels, child } of family.series()) {
        const pairs = labels.map((value, index) => `${family.labelNames[index]}="${escapeLabel(value)}"`)
        if (family.type === 'histogram') renderHistogram(lines, family.name, pairs, child as HistogramChild, family.buckets!)
        else {
          const value = family.type === 'info' ? 1 : (child as CounterChild).value
          lines.push(`${family.name}${braces(pairs)} ${formatNumber(value)}`)
        }
      }
    }
    if (open) lines.push('# EOF')
    return `${lines.join('\n')}\n`
  }

  #add<Child extends CounterChild | HistogramChild>(family: Family<Child>): Family<Child> {
    if (this.#families.some((existing) => existing.name === family.name)) throw new Error(`metric ${family.name} registered twice`)
    this.#families.push(family as unknown as Family<CounterChild | HistogramChild>)
    return family
  }
}

function renderHistogram(lines: string[], name: string, pairs: string[], child: HistogramChild, bounds: readonly number[]): void {
  let cumulative = 0
  for (let index = 0; index <= bounds.length; index++) {
    cumulative += child.counts[index]!
    const le = index < bounds.length ? formatNumber(bounds[index]!) : '+Inf'
    lines.push(`${name}_bucket${braces([...pairs, `le="${le}"`])} ${cumulative}`)
  }
  lines.push(`${name}_sum${braces(pairs)} ${formatNumber(child.sum)}`, `${name}_count${braces(pairs)} ${child.count}`)
}

function braces(pairs: string[]): string {
  return pairs.length === 0 ? '' : `{${pairs.join(',')}}`
}

export function formatNumber(value: number): string {
  if (value === Number.POSITIVE_INFINITY) return '+Inf'
  if (value === Number.NEGATIVE_INFINITY) return '-Inf'
  if (Number.isNaN(value)) return 'NaN'
  return String(value)
}

function escapeLabel(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`))
}

function escapeHelp(value: string): string {
  return value.replace(/[\\\n]/g, (c) => (c === '\n' ? '\\n' : '\\\\'))
}

/**
 * The value of a quantile from a histogram's non-cumulative bucket counts, interpolated linearly
 * within the bucket as Prometheus' histogram_quantile does; undefined without observations.
 */
export function quantile(q: number, counts: ArrayLike<number>, bounds: readonly number[]): number | undefined {
  let total = 0
  for (let index = 0; index < counts.length; index++) total += counts[index]!
  if (total === 0) return undefined
  const rank = q * total
  let seen = 0
  for (let index = 0; index < counts.length; index++) {
    const inBucket = counts[index]!
    if (seen + inBucket >= rank && inBucket > 0) {
      if (index === bounds.length) return bounds[bounds.length - 1]
      const lower = index === 0 ? 0 : bounds[index - 1]!
      const upper = bounds[index]!
      return lower + (upper - lower) * ((rank - seen) / inBucket)
    }
    seen += inBucket
  }
  return bounds[bounds.length - 1]
}
