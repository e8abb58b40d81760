// `npm run sim:fleet -- --sidecars 1000`: a fleet of sidecars, simulated in one process, against one
// central policy source on 127.0.0.1. Each sidecar runs the real control client as `pillion run`
// wires it (openPolicyFeed: ControlSource with its ETags, the poller with jitter and backoff;
// createReloader: validate, apply), with only the gateway itself left out. The script changes the
// policy, takes the source down for a while and brings it back with another change, and reports
// what the source saw and how fast the fleet followed; --svg writes the chart.
//
//   --sidecars N        default 1000
//   --interval S        [control] poll, seconds; default 15
//   --jitter F          [control] jitter; default 0.2
//   --backoff-max S     [control] backoff_max, seconds; default 120
//   --down-seconds S    how long the source is down; default 60
//   --ramp S            sidecars start evenly over this many seconds, as a rollout would; default one interval
//   --svg FILE          write the chart (requests per second at the source, share of the fleet on each version)
//   --json FILE         write the figures
import { writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { parseArgs } from 'node:util'
import { loadConfigText } from '../src/config/load.ts'
import { openPolicyFeed } from '../src/control/policy-feed.ts'
import { createReloader } from '../src/control/reloader.ts'

const { values: flags } = parseArgs({
  options: {
    sidecars: { type: 'string', default: '1000' },
    interval: { type: 'string', default: '15' },
    jitter: { type: 'string', default: '0.2' },
    'backoff-max': { type: 'string', default: '120' },
    'down-seconds': { type: 'string', default: '60' },
    ramp: { type: 'string' },
    svg: { type: 'string' },
    json: { type: 'string' },
  },
})
const SIDECARS = Number(flags.sidecars)
const INTERVAL_S = Number(flags.interval)
const JITTER = Number(flags.jitter)
const BACKOFF_MAX_S = Number(flags['backoff-max'])
const DOWN_S = Number(flags['down-seconds'])
const RAMP_S = Number(flags.ramp ?? INTERVAL_S)
for (const [name, value] of Object.entries({ SIDECARS, INTERVAL_S, JITTER, BACKOFF_MAX_S, DOWN_S, RAMP_S })) {
  if (!Number.isFinite(value) || value < 0) throw new Error(`bad ${name}: ${value}`)
}

const started = performance.now()
const now = () => (performance.now() - started) / 1000
const sleep = (seconds: number) => new Promise((resolve) => setTimeout(resolve, seconds * 1000))

/** The central policy: version n of one service's policy. */
const policyText = (version: number) => `[gateway]
service = "orders-v${version}"

[listeners.ingress]
listen = "127.0.0.1:8080"
direction = "ingress"

[upstreams.local]
endpoints = ["http://127.0.0.1:3000"]

[[routes]]
listener = "ingress"
path = "/*"
upstream = "local"
timeout = "${version}s"
`

/** The source: serves the current version with an ETag, answers If-None-Match with 304; counts what it answers. */
class PolicySource {
  version = 1
  server: Server | undefined
  port = 0
  readonly answered: Array<{ at: number; status: number }> = []

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      const etag = `"v${this.version}"`
      const status = req.headers["if-none-match"] === etag ? 304 : 200
      this.answered.push({ at: now(), status })
      if (status === 304) return res.writeHead(304, { etag }).end()
      res.writeHead(200, { etag, 'content-type': 'application/toml' }).end(policyText(this.version))
    })
    server.keepAliveTimeout = 60_000
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve))
    this.port = (server.address() as AddressInfo).port
    this.server = server
  }

  /** Down: the port refuses connections, and open ones are cut. */
  async stop(): Promise<void> {
    const server = this.server!
    this.server = undefined
    const closed = new Promise<void>((resolve) => server.close(() => resolve()))
    server.closeAllConnections()
    await closed
  }
}

const silent = { log() {} }
const source = new PolicySource()
await source.start()
const url = `http://127.0.0.1:${source.port}/orders.toml`
const bootstrapText = `${policyText(0)}
[control]
source = "${url}"
poll = "${INTERVAL_S}s"
jitter = ${JITTER}
backoff_max = "${BACKOFF_MAX_S}s"
`
/** Every attempt a sidecar makes, whether or not the source was there to see it. */
const attempts: number[] = []
const realFetch = globalThis.fetch
const countingFetch: typeof fetch = (input, init) => {
  attempts.push(now())
  return realFetch(input, init)
}
/** For each sidecar, when it put each version in service. */
const appliedAt: Array<Map<number, number>> = []
const host = {
  readTextFile: async () => bootstrapText,
  readTextFileSync: () => bootstrapText,
  writeTextFile: async () => {},
  watchFile: () => () => {},
  env: () => undefined,
}

console.log(`sim:fleet: ${SIDECARS} sidecars polling ${url} every ${INTERVAL_S}s (jitter ${JITTER}, backoff_max ${BACKOFF_MAX_S}s), started over ${RAMP_S}s`)
globalThis.fetch = countingFetch
const stops: Array<() => void> = []
const bootstrapConfig = loadConfigText(bootstrapText, 'pillion.toml')
await Promise.all(
  Array.from({ length: SIDECARS }, async (_, index) => {
    await sleep((RAMP_S * index) / SIDECARS)
    const bootstrap = { config: bootstrapConfig, text: bootstrapText }
    const feed = await openPolicyFeed('pillion.toml', bootstrap, host, silent)
    const applied = new Map<number, number>([[versionOf(feed.initial.config.gateway.service), now()]])
    appliedAt[index] = applied
    const reloader = await createReloader({
      source: feed.name,
      initialText: feed.initial.text,
      read: () => feed.read(),
      load: (text) => feed.load(text),
      applied: (text) => feed.applied(text),
      apply: async (config) => void applied.set(versionOf(config.gateway.service), now()),
      logger: silent,
    })
    stops.push(feed.watch((trigger) => reloader.reload(trigger)))
  }),
)
const startupDone = now()
const startedFromSource = appliedAt.filter((applied) => applied.has(1)).length
console.log(`start: ${SIDECARS} sidecars started in ${startupDone.toFixed(1)}s, ${startedFromSource} of them on the source's policy at once`)

function versionOf(service: string): number {
  return Number(/-v(\d+)$/.exec(service)?.[1] ?? -1)
}

/** Seconds after `since` until the given share of the fleet had `version` (undefined if it never did). */
function reached(version: number, since: number, share: number): number | undefined {
  const times = appliedAt.map((applied) => applied.get(version)).filter((at): at is number => at !== undefined).sort((a, b) => a - b)
  const needed = Math.ceil(share * SIDECARS)
  return times.length >= needed ? times[needed - 1]! - since : undefined
}

const everyone = (version: number) => appliedAt.every((applied) => applied.has(version))
async function untilEveryone(version: number, boundS: number): Promise<void> {
  const deadline = now() + boundS
  while (!everyone(version) && now() < deadline) await sleep(0.05)
}

const perSecond = (times: number[], from: number, to: number) => times.filter((at) => at >= from && at < to).length / (to - from)

// Steady state: two intervals, from one interval after the last sidecar started (its first poll falls anywhere in one).
const steady = { from: startupDone + INTERVAL_S, to: startupDone + 3 * INTERVAL_S }
await sleep(steady.to - now())
const steadyAnswers = source.answered.filter(({ at }) => at >= steady.from && at < steady.to)
const steadyRate = steadyAnswers.length / (steady.to - steady.from)
const notModified = steadyAnswers.filter(({ status }) => status === 304).length / Math.max(1, steadyAnswers.length)
console.log(`steady: ${steadyRate.toFixed(1)} requests/s at the source (${(notModified * 100).toFixed(1)}% 304s; ${SIDECARS} / ${INTERVAL_S}s = ${(SIDECARS / INTERVAL_S).toFixed(1)})`)

// A change.
const changedAt = now()
source.version = 2
await untilEveryone(2, 3 * INTERVAL_S)
const change = { p50: reached(2, changedAt, 0.5), p99: reached(2, changedAt, 0.99), p100: reached(2, changedAt, 1) }
const seconds = (value: number | undefined) => (value === undefined ? 'never' : `${value.toFixed(1)}s`)
console.log(`change: 50% of the fleet in ${seconds(change.p50)}, 99% in ${seconds(change.p99)}, 100% in ${seconds(change.p100)} (interval ${INTERVAL_S}s, jitter ±${(JITTER * 50).toFixed(0)}%)`)

// The source down for a while; another change is published while it is down.
await sleep(INTERVAL_S / 2)
const downAt = now()
await source.stop()
source.version = 3
await sleep(DOWN_S)
const upAt = now()
await source.start()
const downAttempts = perSecond(attempts, downAt, upAt)
console.log(`down ${DOWN_S}s: ${downAttempts.toFixed(1)} attempts/s from the fleet while down (backoff)`)
await untilEveryone(3, BACKOFF_MAX_S * (1 + JITTER / 2) + 2 * INTERVAL_S)
const recovery = { p50: reached(3, upAt, 0.5), p99: reached(3, upAt, 0.99), p100: reached(3, upAt, 1) }
console.log(`back: 50% of the fleet on the new policy ${seconds(recovery.p50)} after the source came back, 99% ${seconds(recovery.p99)}, 100% ${seconds(recovery.p100)}`)
await sleep(INTERVAL_S)
const endAt = now()
for (const stop of stops) stop()

/** Requests per second at the source, in one-second bins. */
const bins = Math.ceil(endAt)
const answeredPerSecond = (status: number) => {
  const counts = new Array<number>(bins).fill(0)
  for (const answer of source.answered) if (answer.status === status) counts[Math.min(bins - 1, Math.floor(answer.at))]!++
  return counts
}
const ok = answeredPerSecond(200)
const notModifiedPerSecond = answeredPerSecond(304)
const attemptsPerSecond = new Array<number>(bins).fill(0)
for (const at of attempts) attemptsPerSecond[Math.min(bins - 1, Math.floor(at))]!++
const total = ok.map((count, second) => count + notModifiedPerSecond[second]!)
const peakAfter = (from: number) => Math.max(...total.slice(Math.ceil(from) + 1))
const afterUpPeak = peakAfter(upAt)
const steadyPeak = Math.max(...total.slice(Math.ceil(steady.from), Math.floor(steady.to)))
console.log(
  `herd: busiest second after the source came back ${afterUpPeak} requests (busiest steady second ${steadyPeak})`,
)

const figures = {
  sidecars: SIDECARS,
  intervalS: INTERVAL_S,
  jitter: JITTER,
  backoffMaxS: BACKOFF_MAX_S,
  downS: DOWN_S,
  rampS: RAMP_S,
  startupS: startupDone,
  startedFromSource,
  steadyRequestsPerSecond: steadyRate,
  steadyShare304: notModified,
  change,
  downAttemptsPerSecond: downAttempts,
  recovery,
  busiestSecondAfterRecovery: afterUpPeak,
  busiestSteadySecond: steadyPeak,
}
if (flags.json !== undefined) writeFileSync(flags.json, `${JSON.stringify(figures, null, 2)}\n`)
if (flags.svg !== undefined) {
  const share = (version: number) =>
    Array.from({ length: bins }, (_, second) => appliedAt.filter((applied) => (applied.get(version) ?? Infinity) <= second + 1).length / SIDECARS)
  writeFileSync(
    flags.svg,
    chart({
      seconds: bins,
      requests: [
        { label: '200 (policy sent)', color: '#d62728', values: ok },
        { label: '304 (unchanged)', color: '#1f77b4', values: notModifiedPerSecond },
        { label: 'attempts (incl. refused)', color: '#7f7f7f', values: attemptsPerSecond, dashed: true },
      ],
      shares: [
        { label: 'on v2', color: '#2ca02c', values: share(2) },
        { label: 'on v3', color: '#9467bd', values: share(3) },
      ],
      marks: [
        { at: changedAt, label: 'v2 published' },
        { at: downAt, label: 'source down, v3 published' },
        { at: upAt, label: 'source back' },
      ],
      title: `${SIDECARS} sidecars, poll ${INTERVAL_S}s, jitter ${JITTER}, backoff_max ${BACKOFF_MAX_S}s, source down ${DOWN_S}s`,
    }),
  )
  console.log(`chart: ${flags.svg}`)
}
await source.stop()
process.exit(0)

interface Series {
  label: string
  color: string
  values: number[]
  dashed?: boolean
}

/** A plain SVG line chart: requests per second on the left axis, share of the fleet on the right. */
function chart(data: { seconds: number; requests: Series[]; shares: Series[]; marks: Array<{ at: number; label: string }>; title: string }): string {
  const [width, height, left, right, top, bottom] = [900, 420, 60, 60, 40, 70]
  const plotW = width - left - right
  const plotH = height - top - bottom
  const maxRequests = Math.max(1, ...data.requests.flatMap((series) => series.values))
  const yMax = niceCeiling(maxRequests)
  const x = (second: number) => left + (second / data.seconds) * plotW
  const yRequests = (value: number) => top + plotH - (value / yMax) * plotH
  const yShare = (value: number) => top + plotH - value * plotH
  const line = (series: Series, y: (value: number) => number) =>
    `<polyline fill="none" stroke="${series.color}" stroke-width="1.5"${series.dashed ? ' stroke-dasharray="4 3"' : ''} points="${series.values
      .map((value, second) => `${x(second + 0.5).toFixed(1)},${y(value).toFixed(1)}`)
      .join(' ')}"/>`
  const ticks = (count: number, label: (i: number) => string, at: (i: number) => number, axisX: number, anchor: string) =>
    Array.from({ length: count + 1 }, (_, i) => `<text x="${axisX}" y="${(at(i) + 4).toFixed(1)}" text-anchor="${anchor}">${label(i)}</text>`).join('')
  const xStep = niceCeiling(data.seconds / 10)
  const legend = [...data.requests, ...data.shares]
    .map((series, i) => {
      const lx = left + i * 165
      return `<line x1="${lx}" y1="${height - 18}" x2="${lx + 20}" y2="${height - 18}" stroke="${series.color}" stroke-width="2"${series.dashed ? ' stroke-dasharray="4 3"' : ''}/><text x="${lx + 25}" y="${height - 14}">${series.label}</text>`
    })
    .join('')
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="${width / 2}" y="20" text-anchor="middle" font-size="13">${data.title}</text>
<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#ccc"/>
${data.marks
  .map((mark, i) => {
    const at = x(mark.at).toFixed(1)
    return `<line x1="${at}" y1="${top}" x2="${at}" y2="${top + plotH}" stroke="#999" stroke-dasharray="2 2"/><text x="${Number(at) + 3}" y="${top + 12 * (i + 1)}" fill="#555">${mark.label}</text>`
  })
  .join('\n')}
${data.requests.map((series) => line(series, yRequests)).join('\n')}
${data.shares.map((series) => line(series, yShare)).join('\n')}
${ticks(4, (i) => String((yMax * i) / 4), (i) => yRequests((yMax * i) / 4), left - 5, 'end')}
${ticks(4, (i) => `${i * 25}%`, (i) => yShare(i / 4), width - right + 5, 'start')}
${Array.from({ length: Math.floor(data.seconds / xStep) + 1 }, (_, i) => `<text x="${x(i * xStep)}" y="${top + plotH + 15}" text-anchor="middle">${i * xStep}s</text>`).join('')}
<text x="15" y="${top + plotH / 2}" transform="rotate(-90 15 ${top + plotH / 2})" text-anchor="middle">requests per second at the source</text>
<text x="${width - 12}" y="${top + plotH / 2}" transform="rotate(90 ${width - 12} ${top + plotH / 2})" text-anchor="middle">share of the fleet</text>
${legend}
</svg>
`
}

function niceCeiling(value: number): number {
  const power = 10 ** Math.floor(Math.log10(value))
  return [1, 2, 2.5, 5, 10].map((step) => step * power).find((candidate) => candidate >= value)!
}
