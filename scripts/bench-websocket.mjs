#!/usr/bin/env node
// The WebSocket rows of `npm run bench` (run after the HTTP rows, or alone with `npm run bench -- --websocket`
// or `node scripts/bench-websocket.mjs`). 127.0.0.1 only; every count and duration is bounded.
//
//   node scripts/bench-websocket.mjs [--rounds=3] [--duration=3] [--connections=32] [--window=16] [--size=64]
//                                    [--idle=5000] [--only=binary,node] [--help]
//
// Upstream: scripts/bench-websocket-peer.mjs, a `ws` echo server on Node (no permessage-deflate).
// 1. Throughput. The bench process is the client (`ws`): --connections WebSockets, each with --window
//    messages of --size bytes (text) in flight; every echo that comes back sends the next message, for
//    --duration seconds. msg/s counts echoes received, so each one is a message relayed each way. The
//    same with 1 connection and 1 message in flight (ping-pong) gives the round-trip latency. Pillion
//    runs a bare route (no policies, no access log) on each target, next to the upstream alone (direct);
//    configurations are interleaved over rounds in a rotating order and the median is reported, with
//    ratios to direct, the proxy's RSS after the run, its CPU per echoed message (the upstream's for
//    direct), and the cores the proxy, the client and the upstream used, and what else kept the machine
//    busy meanwhile ("other": the kernel's share not charged to them, or other work on a shared machine).
// 2. Idle connections. For each target, a fresh Pillion and a fresh upstream; a client process
//    (bench-websocket-peer.mjs idle) opens and closes 50 connections to warm up, then opens --idle
//    connections through Pillion, each exchanging one message, and leaves them idle. The gateway's
//    VmRSS before and 2 s after, over --idle, is the kB per idle WebSocket (the issue's target: ≤ 20 kB
//    on the binary). The same against the upstream alone is the direct row. --idle=0 skips this part.
//    Pillion holds two sockets per connection, the client and the upstream one each: the children get
//    `ulimit -n` raised when the hard limit allows, else the bench says what to do.
//
// --only keeps the targets whose name contains one of the words (direct always runs).
// Writes reports/bench-websocket.json (not committed).
import { spawn, spawnSync } from 'node:child_process'
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, release, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { WebSocket } from 'ws'
import { cpuSeconds, fail, fmt, freePort, machineBusySeconds, median, metricSum, missingTargets, parseArgs, pillionPolicy, quantile, ratio, ROOT, roundOrder, RUNTIMES, rssKb, waitForPort } from './bench-lib.mjs'

const PEER = join(ROOT, 'scripts/bench-websocket-peer.mjs')

// ---------------------------------------------------------------------------------------------- options
const args = parseArgs(process.argv.slice(2))
if (args.help) {
  const lines = readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1)
  console.log(lines.slice(0, lines.findIndex((line) => !line.startsWith('//'))).map((line) => line.replace(/^\/\/ ?/, '')).join('\n'))
  process.exit(0)
}
const known = new Set(['rounds', 'duration', 'connections', 'window', 'size', 'idle', 'only'])
for (const key of Object.keys(args)) if (!known.has(key)) fail(`unknown option --${key} (see --help)`)
const ROUNDS = whole('rounds', 3, 1, 50)
const DURATION_S = whole('duration', 3, 1, 60)
const CONNECTIONS = whole('connections', 32, 1, 1000)
const WINDOW = whole('window', 16, 1, 1024)
const SIZE = whole('size', 64, 1, 1024 * 1024)
const IDLE = whole('idle', 5000, 0, 20_000)
const ONLY = args.only?.split(',').filter(Boolean)
const PAYLOAD = 'x'.repeat(SIZE)

function whole(name, fallback, min, max) {
  const value = Number(args[name] ?? fallback)
  if (!Number.isInteger(value) || value < min || value > max) fail(`--${name} must be a whole number from ${min} to ${max}`)
  return value
}

const missing = missingTargets()
if (missing.length > 0) fail(`${missing.join(', ')} missing; run npm run build`)

// Pillion holds the client's and the upstream's socket of each idle connection; the client and the
// upstream processes one each. Children get the limit raised in a shell when the hard limit allows.
const FDS_NEEDED = 2 * IDLE + 512
const limit = (flag) => Number(spawnSync('sh', ['-c', `ulimit ${flag}`], { encoding: 'utf8' }).stdout.trim().replace('unlimited', 'Infinity'))
const SOFT_FDS = limit('-n')
const HARD_FDS = limit('-Hn')
const RAISE_FDS = SOFT_FDS < FDS_NEEDED
if (RAISE_FDS && HARD_FDS < FDS_NEEDED) {
  fail(`--idle=${IDLE} needs ${FDS_NEEDED} file descriptors in Pillion's process; the hard limit (ulimit -Hn) is ${HARD_FDS}. Raise it, or pass a smaller --idle`)
}

// ---------------------------------------------------------------------------------------------- processes
const work = mkdtempSync(join(tmpdir(), 'pillion-bench-ws-'))
const children = new Set()
process.on('exit', () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
  rmSync(work, { recursive: true, force: true })
})
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130))

/** Starts a child (under `ulimit -n` when the limit must be raised: the shell execs it, same pid). */
function start(command, argv, { onLine, stderrTo, stdin = 'ignore' } = {}) {
  const stderr = stderrTo === undefined ? 'inherit' : openSync(stderrTo, 'a')
  const [file, list] = RAISE_FDS ? ['sh', ['-c', `ulimit -n ${FDS_NEEDED} && exec "$@"`, 'sh', command, ...argv]] : [command, argv]
  const child = spawn(file, list, { stdio: [stdin, 'pipe', stderr], cwd: work })
  if (typeof stderr === 'number') closeSync(stderr)
  children.add(child)
  child.once('exit', () => children.delete(child))
  let tail = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (text) => {
    const lines = (tail + text).split('\n')
    tail = lines.pop()
    for (const line of lines) onLine?.(line)
  })
  return child
}

async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  await exited
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function startEcho(what) {
  const port = await freePort()
  const child = start('node', [PEER, 'echo', String(port)])
  await waitForPort(port, child, what)
  return { port, child }
}

/** Pillion on a bare route to the upstream; resolves once it accepts connections. */
async function startPillion(runtime, upstreamPort, name) {
  const [command, ...rest] = RUNTIMES[runtime]
  const listen = await freePort()
  const admin = await freePort()
  const slug = name.replace(/\W+/g, '-')
  const file = join(work, `${slug}.toml`)
  writeFileSync(file, pillionPolicy({ listen, admin, upstreamPort, chain: false }))
  const stderrTo = join(work, `${slug}.stderr.log`)
  const child = start(command, [...rest, 'run', '-c', file], { stderrTo })
  await waitForPort(listen, child, `pillion ${name}`)
  const stderrTail = () => readFileSync(stderrTo, 'utf8').split('\n').slice(-20).join('\n')
  return { port: listen, admin, child, stderrTail }
}

/** The sum of pillion_websocket_connections on the admin listener's /metrics. */
async function openGauge(admin) {
  try {
    return await metricSum(admin, 'pillion_websocket_connections')
  } catch {
    return NaN
  }
}

// ---------------------------------------------------------------------------------------------- throughput
function openClients(config, count) {
  return Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise((resolve, reject) => {
          const ws = new WebSocket(`ws://127.0.0.1:${config.port}/bench`, { perMessageDeflate: false, handshakeTimeout: 10_000 })
          ws.once('open', () => resolve(ws))
          ws.once('error', (error) => reject(new Error(`${config.name}: ${error.message}${config.stderrTail ? `\n${config.stderrTail()}` : ''}`)))
        }),
    ),
  )
}

function closeClients(sockets) {
  return Promise.all(
    sockets.map(
      (ws) =>
        new Promise((resolve) => {
          if (ws.readyState === WebSocket.CLOSED) return resolve()
          const timer = setTimeout(() => (ws.terminate(), resolve()), 5000)
          ws.once('close', () => (clearTimeout(timer), resolve()))
          ws.close(1000)
        }),
    ),
  )
}

/**
 * One sample: `connections` WebSockets, each keeping `window` messages in flight for `seconds`. An echo
 * received sends the next message; echoes that arrive within the time count, and their round trips.
 */
async function measure(config, upstream, connections, window, seconds) {
  const sockets = await openClients(config, connections).catch((error) => fail(error.message))
  const rtts = []
  let received = 0
  let inFlight = 0
  let sending = true
  let problem
  let drained
  const allBack = new Promise((resolve) => (drained = resolve))
  const cpuProxy = cpuSeconds(config.child.pid)
  const cpuUpstream = cpuSeconds(upstream.child.pid)
  const cpuClient = process.cpuUsage()
  const busy = machineBusySeconds()
  const started = performance.now()
  const end = started + seconds * 1000
  for (const ws of sockets) {
    const sentAt = new Float64Array(window) // a ring: echoes come back in the order sent
    let head = 0
    let tail = 0
    const send = () => {
      sentAt[tail] = performance.now()
      tail = (tail + 1) % window
      inFlight++
      ws.send(PAYLOAD)
    }
    ws.on('message', (data, isBinary) => {
      const now = performance.now()
      const rtt = now - sentAt[head]
      head = (head + 1) % window
      inFlight--
      if (isBinary || data.length !== SIZE) problem ??= `an echo of ${data.length} bytes (${isBinary ? 'binary' : 'text'}) for ${SIZE} of text`
      if (now <= end) {
        received++
        rtts.push(rtt)
      }
      if (sending) send()
      else if (inFlight === 0) drained()
    })
    ws.on('close', (code) => sending && (problem ??= `a connection closed with ${code} during the run`))
    for (let i = 0; i < window; i++) send()
  }
  await sleep(end - performance.now())
  sending = false
  const wall = (performance.now() - started) / 1000
  const proxySeconds = cpuSeconds(config.child.pid) - cpuProxy
  const upstreamSeconds = cpuSeconds(upstream.child.pid) - cpuUpstream
  const client = process.cpuUsage(cpuClient)
  const machineSeconds = machineBusySeconds() - busy
  if (inFlight > 0 && (await Promise.race([allBack.then(() => true), sleep(10_000).then(() => false)])) === false) {
    problem ??= `${inFlight} messages never came back`
  }
  await closeClients(sockets)
  if (problem !== undefined) fail(`${config.name}: ${problem}${config.stderrTail ? `\n${config.stderrTail()}` : ''}`)
  rtts.sort((a, b) => a - b)
  const direct = config.name === 'direct'
  const clientSeconds = (client.user + client.system) / 1e6
  return {
    rate: received / seconds,
    p50: quantile(rtts, 0.5) * 1000,
    p99: quantile(rtts, 0.99) * 1000,
    rss: rssKb(config.child.pid) / 1024,
    cpuUsPerMessage: received > 0 ? ((direct ? upstreamSeconds : proxySeconds) * 1e6) / received : NaN,
    proxyCores: direct ? NaN : proxySeconds / wall,
    clientCores: clientSeconds / wall,
    upstreamCores: upstreamSeconds / wall,
    // What the machine was busy with besides the three: other work on a shared machine, or the kernel.
    otherCores: (machineSeconds - (direct ? 0 : proxySeconds) - clientSeconds - upstreamSeconds) / wall,
  }
}

// ---------------------------------------------------------------------------------------------- idle connections
/** Lines a peer prints, as JSON events, awaited one name at a time. */
function eventQueue() {
  const seen = []
  let waiter
  return {
    push(line) {
      let event
      try {
        event = JSON.parse(line)
      } catch {
        return
      }
      seen.push(event)
      waiter?.()
    },
    async next(name, timeoutMs, what) {
      const deadline = performance.now() + timeoutMs
      for (;;) {
        const index = seen.findIndex((e) => e.event === name || e.event === 'error')
        if (index >= 0) {
          const [event] = seen.splice(index, 1)
          if (event.event === 'error') fail(`${what}: ${event.message}`)
          return event
        }
        const left = deadline - performance.now()
        if (left <= 0) fail(`${what}: no "${name}" from the client within ${Math.round(timeoutMs / 1000)} s`)
        await Promise.race([new Promise((resolve) => (waiter = resolve)), sleep(Math.min(left, 1000))])
      }
    },
  }
}

/** --idle connections held open through `runtime` (or to the upstream alone), and what they cost its RSS. */
async function idleRun(name, runtime) {
  const upstream = await startEcho(`${name}: upstream`)
  const gateway = runtime === undefined ? undefined : await startPillion(runtime, upstream.port, `idle ${name}`)
  const measured = gateway ?? upstream
  const events = eventQueue()
  const client = start('node', [PEER, 'idle', `ws://127.0.0.1:${measured.port}/idle`, String(IDLE)], { stdin: 'pipe', onLine: events.push })
  const what = `idle ${name}`
  await events.next('warm', 120_000, what)
  await sleep(1000)
  const before = rssKb(measured.child.pid)
  client.stdin.write('open\n')
  const opened = await events.next('open', 240_000, what)
  await sleep(2000)
  const after = rssKb(measured.child.pid)
  const gauge = gateway === undefined ? NaN : await openGauge(gateway.admin)
  client.stdin.write('close\n')
  const closed = await events.next('closed', 60_000, what)
  await sleep(1000)
  const afterClose = rssKb(measured.child.pid)
  const gaugeAfterClose = gateway === undefined ? NaN : await openGauge(gateway.admin)
  await stop(client)
  if (gateway !== undefined) await stop(gateway.child)
  await stop(upstream.child)
  return {
    config: name,
    requested: IDLE,
    opened: opened.opened,
    failed: opened.failed,
    openMs: opened.ms,
    closeMs: closed.ms,
    gauge,
    gaugeAfterClose,
    rssBeforeKb: before,
    rssAfterKb: after,
    rssAfterCloseKb: afterClose,
    kbPerConnection: opened.opened > 0 ? (after - before) / opened.opened : NaN,
  }
}

// ---------------------------------------------------------------------------------------------- run
// A word of `npm run bench -- --only` may name an HTTP configuration: "binary bare" keeps binary.
const wanted = (name) => !ONLY || ONLY.some((word) => name.includes(word) || word.includes(name))
const runtimes = Object.keys(RUNTIMES).filter(wanted)
const configCount = 1 + runtimes.length
const expectedS = configCount * 2 + ROUNDS * configCount * 2 * (DURATION_S + 0.5) + (IDLE > 0 ? configCount * (8 + IDLE / 1000) : 0)
console.log(
  `\nbench (WebSocket): ${configCount} configurations × ${ROUNDS} rounds × (${CONNECTIONS} connections × ${WINDOW} in flight, then 1 × 1) × ${DURATION_S}s, ` +
    `${SIZE}-byte text messages${IDLE > 0 ? `; then ${IDLE} idle connections through each` : ''}: about ${Math.ceil(expectedS)} s`,
)
console.log(
  `machine: ${cpus().length} CPUs (${cpus()[0]?.model.trim()}), load ${loadavg().map((l) => l.toFixed(2)).join(' ')}, Linux ${release()}; ` +
    `the client (this process), the upstream and the proxy share them; ulimit -n ${SOFT_FDS}${RAISE_FDS ? `, raised to ${FDS_NEEDED} in the children` : ''}`,
)

const upstream = await startEcho('echo upstream')
const configs = [{ name: 'direct', port: upstream.port, child: upstream.child }]
for (const runtime of runtimes) configs.push({ name: runtime, runtime, ...(await startPillion(runtime, upstream.port, `ws ${runtime}`)) })
console.log(`upstream: \`ws\` echo server on Node, no permessage-deflate; client: \`ws\` in the bench process`)

const CASES = [
  { key: 'window', connections: CONNECTIONS, window: WINDOW },
  { key: 'pingpong', connections: 1, window: 1 },
]
for (const config of configs) await measure(config, upstream, CONNECTIONS, WINDOW, 1) // warm-up: JIT, first connections

const samples = new Map()
for (let round = 0; round < ROUNDS; round++) {
  const order = roundOrder(configs, round)
  for (const c of CASES) {
    for (const config of order) {
      const key = `${config.name}@${c.key}`
      samples.set(key, [...(samples.get(key) ?? []), await measure(config, upstream, c.connections, c.window, DURATION_S)])
    }
  }
  process.stdout.write(`round ${round + 1}/${ROUNDS} done\n`)
}
for (const config of configs.slice(1)) await stop(config.child)
await stop(upstream.child)

const FIELDS = ['rate', 'p50', 'p99', 'rss', 'cpuUsPerMessage', 'proxyCores', 'clientCores', 'upstreamCores', 'otherCores']
const row = (name, key) => {
  const list = samples.get(`${name}@${key}`)
  return Object.fromEntries(FIELDS.map((field) => [field, median(list.map((s) => s[field]))]))
}
const results = []
for (const c of CASES) {
  const direct = row('direct', c.key)
  for (const config of configs) {
    const r = row(config.name, c.key)
    results.push({
      config: config.name,
      connections: c.connections,
      window: c.window,
      ...r,
      rateVsDirect: ratio(r.rate, direct.rate),
      p50VsDirect: ratio(r.p50, direct.p50),
      p99VsDirect: ratio(r.p99, direct.p99),
      samples: samples.get(`${config.name}@${c.key}`),
    })
  }
}

console.log(`\nWebSocket, ${CONNECTIONS} connections × ${WINDOW} messages in flight, ${SIZE}-byte text, echo; median of ${ROUNDS} rounds (×d: ratio to direct)`)
console.log(`${'config'.padEnd(10)}   msg/s   ×d │ p50 µs   ×d │ p99 µs   ×d │ RSS MB │ CPU µs/msg │ cores: proxy client upstream other`)
for (const r of results.filter((r) => r.window === WINDOW && r.connections === CONNECTIONS)) {
  console.log(
    `${r.config.padEnd(10)} ${fmt(r.rate)} ${fmt(r.rateVsDirect, 2, 4)} │ ${fmt(r.p50, 0, 6)} ${fmt(r.p50VsDirect, 1, 4)} │ ${fmt(r.p99, 0, 6)} ${fmt(r.p99VsDirect, 1, 4)} │ ${fmt(r.rss, 0, 6)} │ ${fmt(r.cpuUsPerMessage, 1, 10)} │ ${fmt(r.proxyCores, 2, 12)} ${fmt(r.clientCores, 2, 6)} ${fmt(r.upstreamCores, 2, 8)} ${fmt(r.otherCores, 2, 5)}`,
  )
}
const pingpong = results.filter((r) => r.window === 1 && r.connections === 1)
console.log(`1 connection, 1 in flight (ping-pong), round trip p50 / p99 µs: ${pingpong.map((r) => `${r.config} ${fmt(r.p50, 0, 0)} / ${fmt(r.p99, 0, 0)}`).join(', ')}`)

const idle = []
if (IDLE > 0) {
  console.log(`\nidle WebSockets: ${IDLE} opened through a fresh Pillion (one message each, then idle); VmRSS of the process before → 2 s after`)
  for (const [name, runtime] of [['direct', undefined], ...runtimes.map((r) => [r, r])]) {
    const r = await idleRun(name, runtime)
    idle.push(r)
    const notes = [`opened in ${(r.openMs / 1000).toFixed(1)} s`]
    if (r.failed > 0) notes.push(`${r.failed} FAILED to open`)
    if (Number.isFinite(r.gauge)) notes.push(`gauge ${r.gauge} open, ${r.gaugeAfterClose} after close`)
    notes.push(`${(r.rssAfterCloseKb / 1024).toFixed(0)} MB 1 s after closing`)
    const label = name === 'direct' ? 'direct (the ws upstream alone)' : name
    console.log(
      `${label.padEnd(31)} ${fmt(r.rssBeforeKb / 1024, 0, 4)} → ${fmt(r.rssAfterKb / 1024, 0, 4)} MB: ${fmt(r.kbPerConnection, 1, 5)} kB per connection  (${notes.join('; ')})`,
    )
  }
}

const binaryIdle = idle.find((r) => r.config === 'binary')
const targets = [
  {
    target: `binary ≤ 20 kB RSS per idle WebSocket (${IDLE} open)`,
    value: binaryIdle?.kbPerConnection ?? NaN,
    limit: 20,
    unit: 'kB',
  },
]
for (const t of targets) t.met = Number.isFinite(t.value) ? t.value <= t.limit : null
console.log('\ntargets (issue 12)')
for (const t of targets) {
  console.log(`  ${t.target.padEnd(48)} ${Number.isFinite(t.value) ? `${t.value.toFixed(1)} ${t.unit}` : '–'}   ${t.met === null ? 'n/a (not measured)' : t.met ? 'met' : 'MISSED'}`)
}

const report = {
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, model: cpus()[0]?.model.trim(), kernel: release(), loadavgAtEnd: loadavg() },
  versions: { node: process.versions.node, ws: JSON.parse(readFileSync(join(ROOT, 'node_modules/ws/package.json'), 'utf8')).version },
  settings: {
    rounds: ROUNDS,
    durationS: DURATION_S,
    connections: CONNECTIONS,
    window: WINDOW,
    sizeBytes: SIZE,
    idle: IDLE,
    only: ONLY ?? null,
    fileDescriptors: { soft: SOFT_FDS, hard: HARD_FDS, raisedTo: RAISE_FDS ? FDS_NEEDED : null },
    units: { rate: 'echoed messages per second', latency: 'µs round trip', rss: 'MB', cpu: 'µs per echoed message', idle: 'kB' },
  },
  results,
  idle,
  targets,
}
mkdirSync(join(ROOT, 'reports'), { recursive: true })
writeFileSync(join(ROOT, 'reports/bench-websocket.json'), `${JSON.stringify(report, null, 2)}\n`)
console.log('\nwrote reports/bench-websocket.json')
process.exit(0)
