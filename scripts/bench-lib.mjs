// What scripts/bench.mjs, scripts/bench-websocket.mjs and scripts/soak.mjs share: options, ports, the Pillion
// targets and their policies, and reading a process tree's RSS and CPU time from /proc. Loopback only.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { connect, createServer } from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
export const BIN = join(ROOT, 'node_modules/.bin')

/** The commands that run Pillion on each target; `run -c FILE` follows. */
export const RUNTIMES = {
  binary: [join(ROOT, 'dist/pillion-linux-x64')],
  bun: [join(BIN, 'bun'), join(ROOT, 'dist/pillion.js')],
  node: ['node', join(ROOT, 'dist/pillion.js')],
  deno: [join(BIN, 'deno'), 'run', '-A', '--quiet', '--unstable-no-legacy-abort', join(ROOT, 'dist/pillion.js')],
}

/** A key pair made for this run; the chain's JWT policy gets the public half inline. */
export async function makeToken() {
  const { publicKey, privateKey } = await generateKeyPair('RS256', { extractable: true })
  const jwk = { ...(await exportJWK(publicKey)), kid: 'bench', alg: 'RS256', use: 'sig' }
  const token = await new SignJWT({ sub: 'bench-user' })
    .setProtectedHeader({ alg: 'RS256', kid: 'bench' })
    .setIssuer('https://bench.local')
    .setAudience('bench')
    .setIssuedAt()
    .setExpirationTime('6h')
    .sign(privateKey)
  return { jwk, token }
}

function tomlInline(object) {
  return `{ ${Object.entries(object).map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join(', ')} }`
}

/**
 * The bench's policy: one route to the upstream, bare (no policies, no access log) or with the full
 * chain: JWT (RS256, inline key), local rate limit, timeout, retry, circuit breaker, bulkhead, metrics
 * (the admin listener) and an access log appended to the file `accessLog`. `omit` takes pieces of the
 * chain out by name (CHAIN_PIECES), to price them one at a time (scripts/bench-compare.mjs --pieces).
 *
 * headerTimeout: [gateway] header_timeout, as a duration ("5s" is shorter than Bun's server can keep
 * alone, so on Bun and Deno it puts Pillion's header-deadline front in); listenAll: listen on 0.0.0.0,
 * as an ingress listener others reach does (wrk still sends to 127.0.0.1); h2c: HTTP/2 in cleartext
 * on the listener and to the upstream (scripts/bench-h2.mjs).
 */
export function pillionPolicy({ listen, admin, upstreamPort, chain, jwk, accessLog, headerTimeout, listenAll = false, h2c = false, omit = [] }) {
  const head = `[gateway]
service = "bench"
${headerTimeout === undefined ? '' : `header_timeout = "${headerTimeout}"\n`}admin = "127.0.0.1:${admin}"

[listeners.ingress]
listen = "${listenAll ? '0.0.0.0' : '127.0.0.1'}:${listen}"
direction = "ingress"
${h2c ? 'protocols = ["h2c"]\n' : ''}
[upstreams.local]
endpoints = ["http://127.0.0.1:${upstreamPort}"]
${h2c ? 'protocol = "h2c"\n' : ''}`
  if (!chain) {
    return `${head}
[observability.access_log]
to = "off"

[[routes]]
listener = "ingress"
path = "/*"
upstream = "local"
timeout = "0s"
`
  }
  const pieces = chainPieces(jwk)
  const kept = (name) => (omit.includes(name) ? '' : pieces[name])
  return `${head}
[observability.access_log]
to = "${omit.includes('access_log') ? 'off' : accessLog}"

[[routes]]
listener = "ingress"
path = "/*"
upstream = "local"
timeout = "${omit.includes('timeout') ? '0s' : '15s'}"
${kept('rate_limit')}${kept('retry')}${kept('bulkhead')}${kept('circuit_breaker')}${kept('jwt')}`
}

/** The chain's pieces that can be left out, each as its TOML under the route; access_log and timeout are keys of their own. */
export const CHAIN_PIECES = ['jwt', 'access_log', 'rate_limit', 'retry', 'timeout', 'circuit_breaker', 'bulkhead']

function chainPieces(jwk) {
  return {
    rate_limit: 'rate_limit = [ { rate = "10000000/s", key = "client_ip" } ]\n',
    retry: 'retry = { attempts = 2 }\n',
    bulkhead: 'bulkhead = { max_concurrent = 10000 }\n',
    circuit_breaker: '\n[routes.circuit_breaker]\n',
    jwt: `
[routes.jwt]
keys = [ ${tomlInline(jwk)} ]
issuer = "https://bench.local"
audience = "bench"
required_claims = ["sub"]
`,
  }
}

/** The dist/ files the targets need that are missing, for a message that says to build. */
export function missingTargets() {
  return Object.values(RUNTIMES)
    .map((command) => command.find((part) => part.includes('/dist/')))
    .filter((file) => !existsSync(file))
}

/** `--key=value`, `--key value` and `--flag` (as "true"), into an object. */
export function parseArgs(argv) {
  const options = {}
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (!arg.startsWith('--')) fail(`unexpected argument ${arg} (see --help)`)
    const [key, inline] = arg.slice(2).split(/=(.*)/s)
    options[key] = inline ?? (argv[i + 1] !== undefined && !argv[i + 1].startsWith('--') ? argv[++i] : 'true')
  }
  return options
}

export function fail(message) {
  console.error(`bench: ${message}`)
  process.exit(1)
}

export function has(command) {
  return spawnSync('sh', ['-c', `command -v ${command}`]).status === 0
}

export function freePort() {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

export function canConnect(port) {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

/** Resolves with the time once something accepts on `port`; fails the bench if `child` exits first. */
export async function waitForPort(port, child, what) {
  const deadline = performance.now() + 20_000
  while (performance.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) fail(`${what} exited (${child.exitCode ?? child.signalCode}) before listening`)
    if (await canConnect(port)) return performance.now()
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
  fail(`${what}: nothing listens on ${port} after 20 s`)
}

/** Every process in the tree under `pid` (nginx's worker, Pillion's workers). */
export function processTree(pid) {
  const all = [pid]
  for (let i = 0; i < all.length; i++) {
    try {
      for (const task of readdirSync(`/proc/${all[i]}/task`)) {
        const children = readFileSync(`/proc/${all[i]}/task/${task}/children`, 'utf8').trim()
        if (children) all.push(...children.split(/\s+/).map(Number))
      }
    } catch {
      // gone, or no /proc
    }
  }
  return all
}

/** VmRSS of the tree under `pid`, in kB. */
export function rssKb(pid) {
  let kb = 0
  for (const p of processTree(pid)) {
    try {
      kb += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))[1])
    } catch {
      // gone
    }
  }
  return kb
}

export const rssMb = (pid) => rssKb(pid) / 1024

/** CPU seconds (user + system) used so far by the tree under `pid`. */
export function cpuSeconds(pid) {
  let ticks = 0
  for (const p of processTree(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      ticks += Number(fields[11]) + Number(fields[12]) // utime, stime (fields 14 and 15 of stat)
    } catch {
      // gone
    }
  }
  return ticks / 100 // USER_HZ is 100 on Linux
}

/** A metric on the admin listener's /metrics, every series of it summed (labels or not). */
export async function metricSum(adminPort, name) {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text()
  let sum = 0
  for (const match of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) sum += Number(match[1])
  return sum
}

/**
 * The order of one round of interleaved measurements: rotated by the round, and reversed every other
 * round, so that a configuration is measured after a different one from round to round (a rotation
 * alone keeps every configuration's predecessor).
 */
export function roundOrder(items, round) {
  const rotated = items.map((_, i) => items[(i + round) % items.length])
  return round % 2 === 1 ? rotated.reverse() : rotated
}

export function median(values) {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b)
  if (sorted.length === 0) return NaN
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** The value at quantile q (0–1) of an already sorted array. */
export function quantile(sorted, q) {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}

export const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : NaN)
export const fmt = (value, digits = 0, width = 7) => (Number.isFinite(value) ? value.toFixed(digits) : '–').padStart(width)

/**
 * CPU seconds the whole machine has been busy (user, nice, system, irq, softirq and steal, over every
 * CPU): next to what the measured processes used, it shows other work disturbing a run.
 */
export function machineBusySeconds() {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number)
    return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / 100 // user nice system [idle iowait] irq softirq steal
  } catch {
    return NaN
  }
}

/**
 * One process's RSS in kB as the kernel splits it: anonymous (heap, malloc, JIT) and file-backed, and
 * of the file-backed pages those of its own executable's code and of its writable segment (in a Bun
 * executable mostly the .bun section: the bundle and its bytecode).
 */
export function memorySplit(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (field) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN)
  const exe = readlinkSync(`/proc/${pid}/exe`).replace(/ \(deleted\)$/, '')
  const split = { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile'), code: 0, data: 0 }
  let mapping
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \S+\s+(.*)$/.exec(line)
    if (head) mapping = head[2].replace(/ \(deleted\)$/, '') === exe ? head[1] : undefined
    else if (mapping === 'r-xp' || mapping === 'rw-p') {
      const rss = /^Rss:\s+(\d+) kB/.exec(line)
      if (rss) split[mapping === 'r-xp' ? 'code' : 'data'] += Number(rss[1])
    }
  }
  return split
}

/**
 * A scratch directory for a bench script and `start`, which runs a command there with its output
 * ignored; on exit (or Ctrl-C) every process started is killed and the directory removed.
 */
export function benchWorkspace(prefix) {
  const work = mkdtempSync(join(tmpdir(), prefix))
  const children = []
  process.on('exit', () => {
    for (const child of children) child.kill('SIGTERM')
    rmSync(work, { recursive: true, force: true })
  })
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130))
  const start = (command, commandArgs) => {
    const child = spawn(command, commandArgs, { stdio: 'ignore', cwd: work })
    children.push(child)
    return child
  }
  return { work, start }
}

/** NGINX answering `return 200` with a 100-byte body on 127.0.0.1, one worker: the benches' upstream. Resolves with its port. */
export async function startNginxUpstream({ work, start }) {
  const port = await freePort()
  const conf = join(work, 'nginx.conf')
  writeFileSync(
    conf,
    `worker_processes 1; daemon off; pid ${work}/nginx.pid; error_log /dev/null crit; events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:${port}; location / { default_type text/plain; return 200 "${'x'.repeat(100)}"; } } }`,
  )
  await waitForPort(port, start('nginx', ['-c', conf, '-p', work]), 'upstream nginx')
  return port
}
