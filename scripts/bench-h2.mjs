#!/usr/bin/env node
// HTTP/2 rows of `npm run bench` (also on its own): h2c requests per second through Pillion against the
// h2c upstream alone, measured with h2load (Debian package nghttp2-client) on 127.0.0.1 only. Every
// configuration runs in every round, in a rotating order; the median is reported.
//
//   node scripts/bench-h2.mjs [--rounds=2] [--duration=2] [--only=binary,node] [--baseline=DIR] [--content-length] [--help]
//
// What runs:
//   upstream   a node:http2 h2c server answering 200 with a 100-byte body (Node, its own process); with
//              --content-length it declares the length, as Go's net/http and NGINX do for small answers
//              (node:http2 does not, and ends the stream in a frame of its own after the data)
//   direct     h2load against the upstream
//   <rt> h2c   Pillion (binary, bun, node, deno): listener protocols = ["h2c"], upstream protocol = "h2c",
//              one route, no policies, no access log
//   <rt> base  with --baseline=DIR: the same, run from DIR's pillion.js and pillion-linux-x64 (a copy of
//              another build's dist/), for a before/after within one run
// h2load runs with 1 and 8 connections, 10 streams in flight on each (-m 10); "CPU µs/req" is Pillion's
// CPU time (from /proc) over the 1-connection runs divided by their requests. NGINX rows would need
// nginx (apt-get install -y nginx) proxying h2c to an HTTP/1.1 upstream; they are left out for now.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { cpuSeconds, fail, fmt, freePort, has, median, missingTargets, parseArgs, pillionPolicy, ratio, ROOT, roundOrder, RUNTIMES, waitForPort } from './bench-lib.mjs'

const args = parseArgs(process.argv.slice(2))
if (args.help) {
  const lines = readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1)
  console.log(lines.slice(0, lines.findIndex((line) => !line.startsWith('//'))).map((line) => line.replace(/^\/\/ ?/, '')).join('\n'))
  process.exit(0)
}
for (const key of Object.keys(args)) if (!['rounds', 'duration', 'only', 'baseline', 'content-length'].includes(key)) fail(`unknown option --${key} (see --help)`)
const ROUNDS = Number(args.rounds ?? 2)
const DURATION_S = Number(args.duration ?? 2)
const ONLY = args.only?.split(',').filter(Boolean)
const BASELINE = args.baseline === undefined ? undefined : resolve(args.baseline)
if (BASELINE !== undefined && !existsSync(join(BASELINE, 'pillion.js'))) fail(`--baseline: ${BASELINE} has no pillion.js (copy another build's dist/ there)`)
const CONNECTIONS = [1, 8]
if (!has('h2load')) fail('h2load is missing. Install it with: apt-get install -y nghttp2-client')
const missing = missingTargets()
if (missing.length > 0) fail(`${missing.join(', ')} missing: run npm run build first`)

const work = mkdtempSync(join(tmpdir(), 'pillion-bench-h2-'))
const children = new Set()
process.on('exit', () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM')
  rmSync(work, { recursive: true, force: true })
})
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130))

function start(command, argv) {
  // Pillion's own log would be 499 lines for the streams h2load leaves in flight at its end.
  const child = spawn(command, argv, { stdio: ['ignore', 'ignore', 'ignore'], cwd: work })
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

const LENGTH = args['content-length'] === undefined ? '' : `, 'content-length': '100'`
const UPSTREAM = `const http2 = require('node:http2'); const body = 'x'.repeat(100)
http2.createServer((req, res) => { res.writeHead(200, { 'content-type': 'text/plain'${LENGTH} }); res.end(body) }).listen(Number(process.argv[1]), '127.0.0.1')`

async function startUpstream() {
  const port = await freePort()
  const child = start('node', ['-e', UPSTREAM, String(port)])
  await waitForPort(port, child, 'h2c upstream')
  return port
}

/** The target's command, run from `dist` (this checkout's dist/ or the baseline's copy). */
function command(runtime, dist) {
  const own = join(ROOT, 'dist')
  return RUNTIMES[runtime].map((part) => (part.startsWith(own) ? join(dist, part.slice(own.length)) : part))
}

async function startPillion(runtime, upstreamPort, dist) {
  const [listen, admin] = [await freePort(), await freePort()]
  const file = join(work, `${runtime}-${listen}.toml`)
  writeFileSync(file, pillionPolicy({ listen, admin, upstreamPort, chain: false, h2c: true }))
  const [program, ...rest] = command(runtime, dist)
  const child = start(program, [...rest, 'run', '-c', file])
  await waitForPort(listen, child, `pillion on ${runtime}`)
  return { port: listen, pid: child.pid }
}

/** Requests per second h2load measured, and how many it made; fails the bench on any failed or non-2xx request. */
function h2load(port, connections) {
  const result = spawnSync('h2load', ['-D', String(DURATION_S), '-c', String(connections), '-m', '10', '-t', '1', `http://127.0.0.1:${port}/`], { encoding: 'utf8' })
  const text = `${result.stdout}${result.stderr}`
  const rps = /finished in [^,]+, ([\d.]+) req\/s/.exec(text)
  const counts = /requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed/.exec(text)
  const status = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(text)
  if (rps === null || counts === null || status === null) fail(`h2load output not understood:\n${text}`)
  if (Number(counts[3]) > 0 || Number(status[3]) + Number(status[4]) > 0) fail(`port ${port}: failed or non-2xx answers:\n${text}`)
  return { rps: Number(rps[1]), requests: Number(counts[1]) }
}

const upstreamPort = await startUpstream()
const configs = [{ name: 'direct', port: upstreamPort }]
for (const runtime of ['binary', 'bun', 'node', 'deno']) {
  if (ONLY !== undefined && !ONLY.some((word) => runtime.includes(word))) continue
  configs.push({ name: `${runtime} h2c`, ...(await startPillion(runtime, upstreamPort, join(ROOT, 'dist'))) })
  if (BASELINE !== undefined) configs.push({ name: `${runtime} base`, ...(await startPillion(runtime, upstreamPort, BASELINE)) })
}
const samples = new Map()
const add = (key, value) => samples.set(key, [...(samples.get(key) ?? []), value])
for (let round = 0; round < ROUNDS; round++) {
  const order = roundOrder(configs, round)
  for (const config of order) {
    for (const connections of CONNECTIONS) {
      const cpuBefore = config.pid === undefined ? 0 : cpuSeconds(config.pid)
      const { rps, requests } = h2load(config.port, connections)
      add(`${config.name} ${connections}`, rps)
      if (config.pid !== undefined && connections === 1) add(`${config.name} cpu`, ((cpuSeconds(config.pid) - cpuBefore) * 1e6) / requests)
    }
  }
}
console.log(`\nHTTP/2 (h2c, h2load -m 10, ${DURATION_S} s × ${ROUNDS} rounds, medians; upstream: node:http2, 100-byte body${LENGTH === '' ? '' : ' with its Content-Length'})`)
console.log(`${'configuration'.padEnd(16)}${CONNECTIONS.map((c) => `req/s @${c}`.padStart(12) + '× direct'.padStart(10)).join('')}${'CPU µs/req'.padStart(12)}`)
for (const config of configs) {
  const cells = CONNECTIONS.map((c) => {
    const rps = median(samples.get(`${config.name} ${c}`))
    return fmt(rps, 0, 12) + fmt(ratio(rps, median(samples.get(`direct ${c}`))), 2, 10)
  })
  const cpu = config.pid === undefined ? NaN : median(samples.get(`${config.name} cpu`))
  console.log(`${config.name.padEnd(16)}${cells.join('')}${fmt(cpu, 0, 12)}`)
}
// The gateways and the upstream still run: exiting stops them (the exit handler above).
process.exit(0)
