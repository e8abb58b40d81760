// What scripts/soak.mjs makes of its samples: the CSV, the growth between the first and the last
// minutes, and the chart (an SVG drawn here, no charting library). No I/O: the unit tests call it.

/** One sampling interval of a soak run. Memory in MB (2^20 bytes); NaN where nothing was measured. */
export interface SoakSample {
  /** Seconds since the load started, at the end of the interval. */
  elapsedS: number
  rssMb: number
  heapUsedMb: number
  heapTotalMb: number
  /** Open file descriptors: sockets, files, pipes, the event loop's own. */
  fds: number
  /** Answers completed in the interval, per second. */
  rps: number
  p50Ms: number
  p99Ms: number
  /** Answers other than 200, and requests that failed outright. */
  errors: number
  /** Requests not sent because too many were already waiting: the gateway fell behind the rate. */
  skipped: number
  /** CPU time the gateway used in the interval, as a share of one core. */
  cpuPercent: number
  /** The machine's 1-minute load average: other work on it shows in the latency. */
  load1: number
}

const COLUMNS: Array<[string, keyof SoakSample, number]> = [
  ['elapsed_s', 'elapsedS', 1],
  ['rss_mb', 'rssMb', 2],
  ['heap_used_mb', 'heapUsedMb', 2],
  ['heap_total_mb', 'heapTotalMb', 2],
  ['fds', 'fds', 0],
  ['rps', 'rps', 1],
  ['p50_ms', 'p50Ms', 3],
  ['p99_ms', 'p99Ms', 3],
  ['errors', 'errors', 0],
  ['skipped', 'skipped', 0],
  ['cpu_percent', 'cpuPercent', 1],
  ['load1', 'load1', 2],
]

/** A header line and a line a sample; a value not measured is an empty field. */
export function soakCsv(samples: readonly SoakSample[]): string {
  const lines = [COLUMNS.map(([name]) => name).join(',')]
  for (const sample of samples) {
    lines.push(COLUMNS.map(([, key, digits]) => (Number.isFinite(sample[key]) ? sample[key].toFixed(digits) : '')).join(','))
  }
  return `${lines.join('\n')}\n`
}

/** soakCsv's text read back (`npm run soak -- --chart FILE` draws a chart again from it). */
export function soakSamplesFromCsv(text: string): SoakSample[] {
  const [header, ...lines] = text.trim().split('\n')
  const names = header!.split(',')
  const keyOf = new Map(COLUMNS.map(([name, key]) => [name, key]))
  return lines.map((line) => {
    const sample = Object.fromEntries(COLUMNS.map(([, key]) => [key, NaN])) as unknown as SoakSample
    line.split(',').forEach((field, index) => {
      const key = keyOf.get(names[index]!)
      if (key !== undefined && field !== '') sample[key] = Number(field)
    })
    return sample
  })
}

export interface Growth {
  /** Mean over the first and over the last window. */
  first: number
  last: number
  /** The change between the two, per hour of run: (last − first) / hours between the windows' middles. */
  perHour: number
}

/** How long the first and last windows are: 2 minutes, or a quarter of a shorter run so they never overlap. */
export function growthWindowS(durationS: number): number {
  return Math.min(120, durationS / 4)
}

/**
 * The first `windowS` seconds against the last `windowS`: means of `key` over each, and the change
 * per hour. NaN when a window holds no measured value (a run too short, or a runtime without it).
 */
export function growth(samples: readonly SoakSample[], key: keyof SoakSample, windowS: number): Growth {
  const end = samples.at(-1)?.elapsedS ?? 0
  const measured = samples.filter((sample) => Number.isFinite(sample[key]))
  const firstWindow = measured.filter((sample) => sample.elapsedS <= windowS)
  const lastWindow = measured.filter((sample) => sample.elapsedS > end - windowS)
  const first = mean(firstWindow.map((sample) => sample[key]))
  const last = mean(lastWindow.map((sample) => sample[key]))
  const hours = (mean(lastWindow.map((s) => s.elapsedS)) - mean(firstWindow.map((s) => s.elapsedS))) / 3600
  return { first, last, perHour: hours > 0 ? (last - first) / hours : NaN }
}

function mean(values: readonly number[]): number {
  return values.length === 0 ? NaN : values.reduce((sum, value) => sum + value, 0) / values.length
}

// ---------------------------------------------------------------------------------------------- chart
interface Series {
  label: string
  key: keyof SoakSample
  color: string
}
interface Panel {
  title: string
  unit: string
  series: Series[]
}

const PANELS: Panel[] = [
  {
    title: 'Memory',
    unit: 'MB',
    series: [
      { label: 'RSS', key: 'rssMb', color: '#1f77b4' },
      { label: 'JS heap used', key: 'heapUsedMb', color: '#ff7f0e' },
      { label: 'JS heap total', key: 'heapTotalMb', color: '#ffbb78' },
    ],
  },
  { title: 'Open file descriptors', unit: '', series: [{ label: 'fds', key: 'fds', color: '#2ca02c' }] },
  { title: 'Throughput', unit: 'req/s', series: [{ label: 'answers per second', key: 'rps', color: '#9467bd' }] },
  {
    title: 'Latency of the interval',
    unit: 'ms',
    series: [
      { label: 'p99', key: 'p99Ms', color: '#d62728' },
      { label: 'p50', key: 'p50Ms', color: '#e377c2' },
    ],
  },
]

const WIDTH = 1000
const PANEL_HEIGHT = 170
const TOP = 56
const LEFT = 70
const RIGHT = 30
const GAP = 40

/** Four panels over time (memory, fds, rps, latency), each with its y axis from 0 so growth is not exaggerated. */
export function soakChartSvg(samples: readonly SoakSample[], title: string): string {
  const height = TOP + PANELS.length * (PANEL_HEIGHT + GAP) + 10
  const endS = Math.max(samples.at(-1)?.elapsedS ?? 0, 1)
  const plotWidth = WIDTH - LEFT - RIGHT
  const x = (s: number) => LEFT + (s / endS) * plotWidth
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="${LEFT}" y="24" font-size="16" font-weight="bold">${escapeXml(title)}</text>`,
  ]
  const minuteStep = niceStep(endS / 60, 10)
  PANELS.forEach((panel, index) => {
    const top = TOP + index * (PANEL_HEIGHT + GAP)
    const values = panel.series.flatMap((series) => samples.map((sample) => sample[series.key])).filter(Number.isFinite)
    const yStep = niceStep(Math.max(...values, 1e-9) * 1.1, 4)
    const yMax = yStep * Math.ceil((Math.max(...values, 1e-9) * 1.1) / yStep)
    const y = (value: number) => top + PANEL_HEIGHT - (value / yMax) * PANEL_HEIGHT
    parts.push(`<text x="${LEFT}" y="${top - 8}" font-weight="bold">${escapeXml(panel.title)}${panel.unit ? ` (${panel.unit})` : ''}</text>`)
    for (let tick = 0; tick * yStep <= yMax + yStep / 2; tick++) {
      const value = tick * yStep
      parts.push(`<line x1="${LEFT}" x2="${WIDTH - RIGHT}" y1="${y(value).toFixed(1)}" y2="${y(value).toFixed(1)}" stroke="#ddd"/>`)
      parts.push(`<text x="${LEFT - 6}" y="${(y(value) + 4).toFixed(1)}" text-anchor="end" fill="#555">${formatTick(value)}</text>`)
    }
    for (let tick = 0; tick * minuteStep * 60 <= endS; tick++) {
      const minute = tick * minuteStep
      const at = x(minute * 60).toFixed(1)
      parts.push(`<line x1="${at}" x2="${at}" y1="${top}" y2="${top + PANEL_HEIGHT}" stroke="#eee"/>`)
      parts.push(`<text x="${at}" y="${top + PANEL_HEIGHT + 14}" text-anchor="middle" fill="#555">${formatTick(minute)} min</text>`)
    }
    parts.push(`<rect x="${LEFT}" y="${top}" width="${plotWidth}" height="${PANEL_HEIGHT}" fill="none" stroke="#999"/>`)
    let legendX = WIDTH - RIGHT
    for (const series of [...panel.series].reverse()) {
      const points = samples.filter((sample) => Number.isFinite(sample[series.key])).map((sample) => `${x(sample.elapsedS).toFixed(1)},${y(sample[series.key]).toFixed(1)}`)
      if (points.length > 0) parts.push(`<polyline fill="none" stroke="${series.color}" stroke-width="1.5" points="${points.join(' ')}"/>`)
      const label = points.length > 0 ? series.label : `${series.label} (not measured)`
      legendX -= label.length * 7 + 24
      parts.push(`<rect x="${legendX}" y="${top - 18}" width="12" height="3" fill="${series.color}"/>`)
      parts.push(`<text x="${legendX + 16}" y="${top - 13}">${escapeXml(label)}</text>`)
    }
  })
  parts.push('</svg>')
  return `${parts.join('\n')}\n`
}

/** A round step (1, 2 or 5 × 10^n) that cuts `span` into about `count` pieces. */
export function niceStep(span: number, count: number): number {
  const raw = span / count
  if (!(raw > 0)) return 1
  const magnitude = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 5, 10].find((factor) => factor * magnitude >= raw) ?? 10
  return step * magnitude
}

/** 0.05, 2.5, 100: a tick's value without float noise or trailing zeros. */
function formatTick(value: number): string {
  return String(Number(value.toPrecision(6)))
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}
