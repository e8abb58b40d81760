#!/usr/bin/env node
// `npm run soak -- --minutes 30`: Pillion under a steady, modest load for a long time, to show whether
// memory, file descriptors or latency creep. Not part of CI. Loopback only.
//
//   npm run soak -- [--minutes=30] [--target=binary|bun|node|deno] [--rate=300] [--interval=5] [--observers] [--help]
//   npm run soak -- --chart reports/soak-binary.csv [--title TEXT]   only draws the chart again, beside the CSV
//
// What runs (each its own process): an upstream (node:http, 100-byte answers) and Pillion with the
// bench's full chain (scripts/bench-lib.mjs: JWT RS256, local rate limit, timeout, retry, circuit
// breaker, bulkhead, metrics, access log to a file). --observers adds traces at sample = 1 and an [audit]
// trail, both sent to a collector in this process, and at the end checks that nothing was lost: after
// the load the gateway is stopped (SIGTERM, so it sends what it still holds) and every request it
// counted in pillion_requests_total must have arrived as one span and one audit record; the report is
// then reports/soak-<target>-observers.*. This process sends --rate GETs per second on
// keep-alive connections, paced evenly (open loop: a slow answer does not slow the sending; past 1,000
// waiting, requests are skipped and counted), and every --interval seconds samples:
//   RSS           VmRSS of the gateway's process tree, from /proc/PID/status
//   JS heap       pillion_heap_used_bytes / _total_bytes from the admin /metrics (Node, Deno: V8's heap;
//                 Bun and the binary: JavaScriptCore's)
//   fds           entries of /proc/PID/fd: sockets, files, pipes
//   rps, p50, p99 answers completed in the interval and their latency, send to last byte
//   errors        answers other than 200 and failed requests; skipped; the gateway's CPU share
// Writes reports/soak-<target>.csv and reports/soak-<target>.png (an SVG drawn by
// scripts/soak-report.ts, made a PNG by rsvg-convert if installed, else headless Chromium at
// /usr/bin/chromium through playwright-core), and prints the growth: the first 2 minutes against the
// last 2 (a quarter of the run each when it is shorter than 8 minutes), per hour. Ctrl-C ends the run
// early and still writes the report.
import { spawn, spawnSync } from 'node:child_process'
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { Agent, createServer, request } from 'node:http'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { cpuSeconds, fail, freePort, has, makeToken, metricSum, parseArgs, pillionPolicy, processTree, quantile, ROOT, RUNTIMES, rssKb, waitForPort } from './bench-lib.mjs'
import { growth, growthWindowS, soakChartSvg, soakCsv, soakSamplesFromCsv } from './soak-report.ts'

// ---------------------------------------------------------------------------------------------- options
const args = parseArgs(process.argv.slice(2))
if (args.help) {
  const lines = readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1)
  console.log(lines.slice(0, lines.findIndex((line) => !line.startsWith('//'))).map((line) => line.replace(/^\/\/ ?/, '')).join('\n'))
  process.exit(0)
}
const known = new Set(['minutes', 'target', 'rate', 'interval', 'chart', 'title', 'observers'])
for (const key of Object.keys(args)) if (!known.has(key)) fail(`unknown option --${key} (see --help)`)
if (args.chart !== undefined) process.exit(await redraw(args.chart, args.title))
const MINUTES = positive('minutes', 30)
const RATE = positive('rate', 300)
const INTERVAL_S = positive('interval', 5)
const TARGET = args.target ?? 'binary'
const OBSERVERS = args.observers !== undefined
if (!(TARGET in RUNTIMES)) fail(`--target must be one of ${Object.keys(RUNTIMES).join(', ')}`)
const MAX_WAITING = 1000
const BODY = 'x'.repeat(100)

function positive(name, fallback) {
  const value = Number(args[name] ?? fallback)
  if (!Number.isFinite(value) || value <= 0) fail(`--${name} must be a number > 0`)
  return value
}

const command = RUNTIMES[TARGET]
const distFile = command.find((part) => part.includes('/dist/'))
if (!existsSync(distFile)) fail(`${distFile} is missing; run npm run build`)

// ---------------------------------------------------------------------------------------------- processes
const work = mkdtempSync(join(tmpdir(), 'pillion-soak-'))
const children = new Set()
process.on('exit', () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
  rmSync(work, { recursive: true, force: true })
})

function start(file, argv, stderrTo) {
  const stderr = openSync(stderrTo, 'a')
  const child = spawn(file, argv, { stdio: ['ignore', 'ignore', stderr], cwd: work })
  closeSync(stderr)
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

const tail = (file) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(-20).join('\n') : '')

async function startUpstream() {
  const port = await freePort()
  const server = `const s = require('node:http').createServer((req, res) => { req.resume(); res.end(${JSON.stringify(BODY)}) }); s.keepAliveTimeout = 60000; s.listen(${port}, '127.0.0.1')`
  const child = start('node', ['-e', server], join(work, 'upstream.stderr.log'))
  await waitForPort(port, child, 'upstream')
  return { port, child }
}

async function startPillion(upstreamPort, jwk, collectorPort) {
  const listen = await freePort()
  const admin = await freePort()
  const file = join(work, 'soak.toml')
  const policy = pillionPolicy({ listen, admin, upstreamPort, chain: true, jwk, accessLog: join(work, 'access.log') })
  writeFileSync(file, collectorPort === undefined ? policy : policy + observerTables(collectorPort))
  const stderrTo = join(work, 'pillion.stderr.log')
  const [program, ...rest] = command
  const child = start(program, [...rest, 'run', '-c', file], stderrTo)
  child.once('exit', (code, signal) => {
    if (!stopping) fail(`pillion (${TARGET}) exited (${code ?? signal}) during the soak:\n${tail(stderrTo)}`)
  })
  await waitForPort(listen, child, `pillion (${TARGET})`)
  await waitForPort(admin, child, `pillion (${TARGET}) admin`)
  return { listen, admin, child, stderrTo }
}

/** --observers: every request traced, and audited, to the collector. */
function observerTables(collectorPort) {
  return `
[observability.traces]
otlp = "http://127.0.0.1:${collectorPort}/v1/traces"
sample = 1

[audit]
sink = "http://127.0.0.1:${collectorPort}/audit"
`
}

/** Receives OTLP/JSON spans and audit batches, counting what arrives; answers 200. */
async function startCollector() {
  const received = { spans: 0, auditRecords: 0, posts: 0, unreadable: 0 }
  const server = createServer((req, res) => {
    const chunks = []
    req.on('data', (chunk) => chunks.push(chunk))
    req.on('end', () => {
      received.posts++
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
        if (req.url === '/v1/traces') {
          for (const resource of body.resourceSpans ?? []) for (const scope of resource.scopeSpans ?? []) received.spans += scope.spans?.length ?? 0
        } else if (req.url === '/audit') received.auditRecords += body.length
        else received.unreadable++
      } catch {
        received.unreadable++
      }
      res.end()
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { port: server.address().port, received, close: () => server.close() }
}

// ---------------------------------------------------------------------------------------------- load
let stopping = false
const agent = new Agent({ keepAlive: true, maxSockets: 32 })
let interval = { latencies: [], errors: 0, skipped: 0 }
let waiting = 0
let sent = 0
let answered = 0
let drained

function send(port, authorization) {
  if (waiting >= MAX_WAITING) {
    interval.skipped++
    return
  }
  waiting++
  const begun = performance.now()
  const path = `/items/${sent++ % 1000}`
  const done = (ok) => {
    waiting--
    if (waiting === 0) drained?.()
    if (ok) {
      interval.latencies.push(performance.now() - begun)
      answered++
    }
    else interval.errors++
  }
  request({ host: '127.0.0.1', port, path, agent, headers: { authorization } }, (res) => {
    res.resume()
    res.once('end', () => done(res.statusCode === 200))
    res.once('error', () => done(false))
  })
    .once('error', () => done(false))
    .end()
}

/** Sends at `RATE` per second, evenly: every few milliseconds, what is due since the start. */
function paceLoad(port, authorization) {
  const startedAt = performance.now()
  let due = 0
  const timer = setInterval(() => {
    const shouldHaveSent = Math.floor(((performance.now() - startedAt) / 1000) * RATE)
    for (; due < shouldHaveSent; due++) send(port, authorization)
  }, 5)
  return () => clearInterval(timer)
}

// ---------------------------------------------------------------------------------------------- sampling
function openFds(pid) {
  let count = 0
  for (const p of processTree(pid)) {
    try {
      count += readdirSync(`/proc/${p}/fd`).length
    } catch {
      // gone
    }
  }
  return count
}

async function heapMb(adminPort) {
  try {
    const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text()
    const read = (name) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN) / 2 ** 20
    return { used: read('pillion_heap_used_bytes'), total: read('pillion_heap_total_bytes') }
  } catch {
    return { used: NaN, total: NaN }
  }
}

async function sample(pillion, elapsedS, seconds, cpuBefore) {
  const { latencies, errors, skipped } = interval
  interval = { latencies: [], errors: 0, skipped: 0 }
  latencies.sort((a, b) => a - b)
  const pid = pillion.child.pid
  const heap = await heapMb(pillion.admin)
  return {
    elapsedS,
    rssMb: rssKb(pid) / 1024,
    heapUsedMb: heap.used,
    heapTotalMb: heap.total,
    fds: openFds(pid),
    rps: latencies.length / seconds,
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
    errors,
    skipped,
    cpuPercent: ((cpuSeconds(pid) - cpuBefore) / seconds) * 100,
    load1: loadavg()[0],
  }
}

// ---------------------------------------------------------------------------------------------- report
async function writePng(svgFile, pngFile) {
  if (has('rsvg-convert')) {
    const result = spawnSync('rsvg-convert', ['-o', pngFile, svgFile], { encoding: 'utf8' })
    if (result.status === 0) return 'rsvg-convert'
    console.error(`soak: rsvg-convert failed: ${result.stderr}`)
  }
  const chromium = '/usr/bin/chromium'
  if (!existsSync(chromium)) return undefined
  const { chromium: launcher } = await import('playwright-core')
  const browser = await launcher.launch({ executablePath: chromium, args: ['--headless', '--no-sandbox', '--disable-gpu'] })
  try {
    const svg = readFileSync(svgFile, 'utf8')
    const [, width, height] = /width="(\d+)" height="(\d+)"/.exec(svg)
    const page = await browser.newPage({ viewport: { width: Number(width), height: Number(height) } })
    await page.setContent(`<!doctype html><body style="margin:0">${svg}</body>`)
    await page.screenshot({ path: pngFile, clip: { x: 0, y: 0, width: Number(width), height: Number(height) } })
    return 'Chromium'
  } finally {
    await browser.close()
  }
}

/** --chart: the SVG and PNG again from a CSV this script wrote, e.g. after the chart's drawing changed. */
async function redraw(csvFile, title) {
  if (!existsSync(csvFile)) fail(`${csvFile} does not exist`)
  const prefix = csvFile.replace(/\.csv$/, '')
  const samples = soakSamplesFromCsv(readFileSync(csvFile, 'utf8'))
  writeFileSync(`${prefix}.svg`, soakChartSvg(samples, title ?? `Pillion soak (${csvFile})`))
  const converter = await writePng(`${prefix}.svg`, `${prefix}.png`)
  console.log(`wrote ${prefix}.svg${converter ? ` and ${prefix}.png (${converter})` : ' (no PNG: install librsvg2-bin or chromium)'}`)
  return 0
}

// ---------------------------------------------------------------------------------------------- run
const version = (command) => spawnSync(command[0], [...command.slice(1), '--version'], { encoding: 'utf8' }).stdout.trim().split('\n')[0]
const what = OBSERVERS ? 'full chain, traces and audit' : 'full chain'
console.log(
  `soak: ${TARGET} (${version(command)}), ${what}, ${RATE} req/s for ${MINUTES} min, a sample every ${INTERVAL_S} s; ` +
    `${cpus().length} CPUs, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`,
)
const { jwk, token } = await makeToken()
const authorization = `Bearer ${token}`
const upstream = await startUpstream()
const collector = OBSERVERS ? await startCollector() : undefined
const pillion = await startPillion(upstream.port, jwk, collector?.port)
mkdirSync(join(ROOT, 'reports'), { recursive: true })
const prefix = join(ROOT, 'reports', `soak-${TARGET}${OBSERVERS ? '-observers' : ''}`)

const samples = []
const stopLoad = paceLoad(pillion.listen, authorization)
const loadStart = performance.now()
const durationS = MINUTES * 60
let finish
const finished = new Promise((resolve) => (finish = resolve))
// Ctrl-C reaches the gateway too: stop sampling at once and report what was measured.
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    stopping = true
    finish()
  })
}
console.log('elapsed   RSS MB  heap MB   fds    rps  p50 ms  p99 ms  errors skipped  CPU %  load')
let cpuBefore = cpuSeconds(pillion.child.pid)
let last = loadStart
while (true) {
  const nextAt = loadStart + (samples.length + 1) * INTERVAL_S * 1000
  const ended = await Promise.race([new Promise((resolve) => setTimeout(() => resolve(false), Math.max(0, nextAt - performance.now()))), finished.then(() => true)])
  if (ended) break
  const now = performance.now()
  const cpuNow = cpuSeconds(pillion.child.pid)
  const s = await sample(pillion, (now - loadStart) / 1000, (now - last) / 1000, cpuBefore)
  cpuBefore = cpuNow
  last = now
  samples.push(s)
  writeFileSync(`${prefix}.csv`, soakCsv(samples)) // each time: a run cut short keeps its data
  const f = (value, digits, width) => (Number.isFinite(value) ? value.toFixed(digits) : '–').padStart(width)
  console.log(
    `${f(s.elapsedS, 0, 6)} s ${f(s.rssMb, 1, 8)} ${f(s.heapUsedMb, 1, 8)} ${f(s.fds, 0, 5)} ${f(s.rps, 0, 6)} ${f(s.p50Ms, 2, 7)} ${f(s.p99Ms, 2, 7)} ${f(s.errors, 0, 7)} ${f(s.skipped, 0, 7)} ${f(s.cpuPercent, 0, 6)} ${f(s.load1, 1, 5)}`,
  )
  if (samples.length >= Math.round(durationS / INTERVAL_S)) break
}
stopLoad()
stopping = true
agent.destroy()

const formatMinutes = (minutes) => String(Number(minutes.toFixed(minutes < 10 ? 1 : 0)))
if (samples.length === 0) fail('stopped before the first sample; nothing to report')
const windowS = growthWindowS(samples.at(-1).elapsedS)
const title = `Pillion soak: ${TARGET}, ${what}, ${RATE} req/s, ${formatMinutes(samples.at(-1).elapsedS / 60)} min (${new Date().toISOString().slice(0, 10)})`
writeFileSync(`${prefix}.svg`, soakChartSvg(samples, title))
const converter = await writePng(`${prefix}.svg`, `${prefix}.png`)
const totals = samples.reduce((sum, s) => ({ errors: sum.errors + s.errors, skipped: sum.skipped + s.skipped }), { errors: 0, skipped: 0 })
const rss = growth(samples, 'rssMb', windowS)
const heap = growth(samples, 'heapUsedMb', windowS)
const fds = growth(samples, 'fds', windowS)
const show = (g, digits, unit) => `${g.first.toFixed(digits)} → ${g.last.toFixed(digits)}${unit}, ${g.perHour >= 0 ? '+' : ''}${g.perHour.toFixed(digits)}${unit} per hour`
const windowText = windowS >= 60 ? `${formatMinutes(windowS / 60)} min` : `${windowS.toFixed(0)} s`
console.log(`\ngrowth, first ${windowText} against the last ${windowText} (means):`)
console.log(`  RSS      ${show(rss, 1, ' MB')}`)
console.log(`  JS heap  ${Number.isFinite(heap.first) ? show(heap, 1, ' MB') : 'not measured (no pillion_heap_used_bytes in /metrics)'}`)
console.log(`  fds      ${show(fds, 1, '')}`)
console.log(`  ${answered} answers of ${sent} sent; ${totals.errors} errors; ${totals.skipped} skipped`)
const lost = collector === undefined ? 0 : await observersLost(collector, pillion)
console.log(`\nwrote ${relative(ROOT, `${prefix}.csv`)}, ${relative(ROOT, `${prefix}.svg`)}${converter ? ` and ${relative(ROOT, `${prefix}.png`)} (${converter})` : ' (no PNG: install librsvg2-bin or chromium)'}`)
process.exit(totals.errors > 0 || lost > 0 ? 1 : 0)

/**
 * --observers: once the last answers are in, what the gateway counted against what reached the
 * collector after it stopped. Returns how many spans and audit records went missing.
 */
async function observersLost(collector, gateway) {
  if (waiting > 0) await Promise.race([new Promise((resolve) => (drained = resolve)), new Promise((resolve) => setTimeout(resolve, 30_000))])
  let requests, spansDropped, auditDropped
  try {
    requests = await metricSum(gateway.admin, 'pillion_requests_total')
    spansDropped = await metricSum(gateway.admin, 'pillion_trace_spans_dropped_total')
    auditDropped = await metricSum(gateway.admin, 'pillion_audit_dropped_total')
  } catch (error) {
    // Ctrl-C reaches the gateway as well: it may be gone before its counters can be read.
    console.log(`  observers: not compared, the gateway's /metrics did not answer (${error.message})`)
    return 0
  }
  const exited = new Promise((resolve) => gateway.child.once('exit', resolve))
  gateway.child.kill('SIGTERM')
  await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 30_000))])
  collector.close()
  const { spans, auditRecords, posts, unreadable } = collector.received
  console.log(`  observers: the gateway counted ${requests} requests; the collector got ${spans} spans and ${auditRecords} audit records in ${posts} POSTs (${unreadable} unreadable); dropped, by the gateway's count: ${spansDropped} spans, ${auditDropped} audit records`)
  const lost = Math.abs(requests - spans) + Math.abs(requests - auditRecords) + unreadable
  if (lost > 0) console.log(`  observers: LOST ${requests - spans} spans and ${requests - auditRecords} audit records`)
  return lost
}
