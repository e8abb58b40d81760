#!/usr/bin/env node
// `npm run bench`: requests per second, p50/p99 latency and RSS through Pillion under each runtime,
// side by side with the upstream alone and NGINX as a proxy, all on 127.0.0.1, interleaved over
// rounds so drift shows. Prints ratios; writes reports/bench.json. Bounded: every run is -d seconds.
//
//   node scripts/bench.mjs [--rounds=2] [--duration=3] [--connections=1,32] [--only=bun,binary]
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const BIN = join(ROOT, 'node_modules/.bin')
const args = Object.fromEntries(
  process.argv.slice(2).map((arg) => {
    const [key, value] = arg.replace(/^--/, '').split('=')
    return [key, value ?? 'true']
  }),
)
const ROUNDS = Number(args.rounds ?? 2)
const DURATION_S = Number(args.duration ?? 3)
const CONNECTIONS = (args.connections ?? '1,32').split(',').map(Number)
const ONLY = args.only?.split(',')
const BODY = 'x'.repeat(100)

function has(command) {
  return spawnSync('sh', ['-c', `command -v ${command}`]).status === 0
}

if (!has('wrk')) {
  console.error('bench: wrk is missing. Install it with: apt-get install -y wrk')
  process.exit(1)
}

const work = mkdtempSync(join(tmpdir(), 'pillion-bench-'))
const children = []
process.on('exit', () => children.forEach((child) => child.kill('SIGTERM'))) // SIGTERM: nginx's master then stops its workers

function freePort() {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

async function waitForPort(port) {
  for (let i = 0; i < 200; i++) {
    const open = await new Promise((resolve) => {
      const socket = connect(port, '127.0.0.1')
      socket.once('connect', () => resolve(true) || socket.destroy())
      socket.once('error', () => resolve(false))
    })
    if (open) return
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  throw new Error(`nothing listens on ${port}`)
}

function start(command, argv, options = {}) {
  const child = spawn(command, argv, { stdio: ['ignore', 'ignore', 'inherit'], ...options })
  children.push(child)
  return child
}

function nginxConf(port, body, upstreamPort) {
  const location = upstreamPort
    ? `location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }`
    : `location / { default_type text/plain; return 200 "${body}"; }`
  const upstream = upstreamPort ? `upstream backend { server 127.0.0.1:${upstreamPort}; keepalive 64; }` : ''
  return `worker_processes 1; daemon off; pid ${work}/nginx-${port}.pid; error_log /dev/null crit;
events { worker_connections 4096; }
http { access_log off; ${upstream}
  server { listen 127.0.0.1:${port}; ${location} } }`
}

async function startNginx(port, upstreamPort) {
  const file = join(work, `nginx-${port}.conf`)
  writeFileSync(file, nginxConf(port, BODY, upstreamPort))
  const child = start('nginx', ['-c', file, '-p', work])
  await waitForPort(port)
  return child
}

async function startUpstream() {
  const port = await freePort()
  if (has('nginx')) return { port, kind: 'nginx return 200', child: await startNginx(port) }
  const script = `Bun.serve({ port: ${port}, hostname: '127.0.0.1', fetch: () => new Response(${JSON.stringify(BODY)}) })`
  const child = start(join(BIN, 'bun'), ['-e', script])
  await waitForPort(port)
  return { port, kind: 'bun server', child }
}

function pillionPolicy(listen, admin, upstreamPort) {
  return `[gateway]
service = "bench"
admin = "127.0.0.1:${admin}"
[listeners.ingress]
listen = "127.0.0.1:${listen}"
direction = "ingress"
[upstreams.local]
endpoints = ["http://127.0.0.1:${upstreamPort}"]
[[routes]]
listener = "ingress"
path = "/*"
upstream = "local"
`
}

const PILLION_COMMANDS = {
  binary: [join(ROOT, 'dist/pillion-linux-x64')],
  bun: [join(BIN, 'bun'), join(ROOT, 'dist/pillion.js')],
  node: ['node', join(ROOT, 'dist/pillion.js')],
  deno: [join(BIN, 'deno'), 'run', '-A', '--unstable-no-legacy-abort', join(ROOT, 'dist/pillion.js')],
}

async function startPillion(name, upstreamPort) {
  const [command, ...rest] = PILLION_COMMANDS[name]
  const port = await freePort()
  const admin = await freePort()
  const file = join(work, `${name}.toml`)
  writeFileSync(file, pillionPolicy(port, admin, upstreamPort))
  const started = performance.now()
  const child = start(command, [...rest, 'run', '-c', file])
  await waitForPort(port)
  return { port, child, startupMs: performance.now() - started }
}

function rssMb(pid) {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024
  } catch {
    return NaN
  }
}

function wrk(port, connections) {
  const result = spawnSync('wrk', ['-t1', `-c${connections}`, `-d${DURATION_S}s`, '--latency', `http://127.0.0.1:${port}/`], {
    encoding: 'utf8',
  })
  const out = result.stdout
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN)
  const toMs = (text) => {
    const [, n, unit] = /([\d.]+)(us|ms|s)/.exec(text) ?? []
    return Number(n) * (unit === 'us' ? 0.001 : unit === 's' ? 1000 : 1)
  }
  const p50 = toMs(/50%\s+(\S+)/.exec(out)?.[1] ?? '')
  const p99 = toMs(/99%\s+(\S+)/.exec(out)?.[1] ?? '')
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? '0'
  return { rps, p50, p99, errors: Number(errors) }
}

const median = (values) => {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b)
  return sorted.length === 0 ? NaN : sorted[Math.floor((sorted.length - 1) / 2)]
}

const upstream = await startUpstream()
const configs = [{ name: 'direct', port: upstream.port, child: upstream.child }]
if (has('nginx')) {
  const port = await freePort()
  configs.push({ name: 'nginx proxy', port, child: await startNginx(port, upstream.port) })
}
for (const name of Object.keys(PILLION_COMMANDS)) {
  if (ONLY && !ONLY.includes(name)) continue
  const file = PILLION_COMMANDS[name].find((part) => part.includes('/dist/'))
  if (file && !existsSync(file)) {
    console.error(`bench: ${file} is missing; run npm run build`)
    continue
  }
  configs.push({ name: `pillion ${name}`, ...(await startPillion(name, upstream.port)) })
}

console.log(`upstream: ${upstream.kind}; wrk -t1, ${DURATION_S}s per run, ${ROUNDS} rounds, interleaved; medians`)
const samples = new Map()
for (let round = 0; round < ROUNDS; round++) {
  for (const connections of CONNECTIONS) {
    for (const config of configs) {
      wrk(config.port, Math.min(connections, 4)) // warm-up, a short run is enough to open connections
      const sample = wrk(config.port, connections)
      sample.rss = rssMb(config.child.pid)
      const key = `${config.name}@${connections}`
      samples.set(key, [...(samples.get(key) ?? []), sample])
    }
  }
}

const report = { date: new Date().toISOString(), upstream: upstream.kind, durationS: DURATION_S, rounds: ROUNDS, results: [] }
for (const connections of CONNECTIONS) {
  console.log(`\n${connections} connection${connections > 1 ? 's' : ''}`)
  console.log('config            rps      ×direct  ×nginx   p50 ms   p99 ms   RSS MB  non-2xx')
  const pick = (name, field) => median((samples.get(`${name}@${connections}`) ?? []).map((s) => s[field]))
  const directRps = pick('direct', 'rps')
  const nginxRps = pick('nginx proxy', 'rps')
  for (const config of configs) {
    const row = {
      config: config.name,
      connections,
      rps: pick(config.name, 'rps'),
      p50: pick(config.name, 'p50'),
      p99: pick(config.name, 'p99'),
      rss: pick(config.name, 'rss'),
      errors: pick(config.name, 'errors'),
      startupMs: config.startupMs,
    }
    row.vsDirect = row.rps / directRps
    row.vsNginx = row.rps / nginxRps
    report.results.push(row)
    console.log(
      `${config.name.padEnd(16)} ${row.rps.toFixed(0).padStart(7)}  ${row.vsDirect.toFixed(2).padStart(6)}  ${row.vsNginx.toFixed(2).padStart(6)}  ${row.p50.toFixed(3).padStart(7)}  ${row.p99.toFixed(3).padStart(7)}  ${row.rss.toFixed(0).padStart(6)}  ${String(row.errors).padStart(7)}`,
    )
  }
}
mkdirSync(join(ROOT, 'reports'), { recursive: true })
writeFileSync(join(ROOT, 'reports/bench.json'), `${JSON.stringify(report, null, 2)}\n`)
console.log('\nwrote reports/bench.json')
process.exit(0)
