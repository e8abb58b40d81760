#!/usr/bin/env node
// Side-by-side CPU per request of several proxies on the bare route: Pillion executables built from
// different commits (before/after a change to the hot path), the naive Bun proxy with a gateway's
// steps added one at a time. Each runs against one NGINX upstream (100-byte body) and wrk -c32 in
// interleaved rounds; a configuration's "paired" figure is the median over rounds of its ratio to the
// first configuration in the same round, which holds better than absolute figures on a busy machine.
//
//   node scripts/bench-compare.mjs [--rounds=8] [--duration=2] [--warmup=6] [--chain | --full] [--memory] NAME=EXECUTABLE ...
//   node scripts/bench-compare.mjs --ladder [--rounds=8] [--duration=2]
//   node scripts/bench-compare.mjs --pieces [--rounds=8] [--duration=2] [EXECUTABLE]
//
//   NAME=EXECUTABLE   a Pillion executable (`EXECUTABLE run -c POLICY`), e.g. before=/tmp/pillion-main
//                     after=dist/pillion-linux-x64; --chain gives it timeout, retry, bulkhead, rate limit
//                     and breaker instead of a bare route; --full `npm run bench`'s full chain (those, JWT and
//                     an access log to a file), every request carrying its bearer token
//   --warmup          seconds of load on each before the rounds (JIT, upstream connections), as in
//                     `npm run bench`
//   --memory          also each one's RSS split (scripts/bench-lib.mjs memorySplit): idle before the
//                     warm-up, the median after the rounds' runs, and 5 s after the last
//   --ladder          the naive Bun proxy (scripts/bench-naive-bun.mjs, compiled like the binary) with 0
//                     to 4 of its steps, then dist/pillion-linux-x64
//   --pieces          the executable (dist/pillion-linux-x64 unless given) with `npm run bench`'s full chain,
//                     then that chain with one piece left out at a time (bench-lib.mjs CHAIN_PIECES), the
//                     access log written to /dev/null and to a directory other than the policy's, and the
//                     bare route; every request carries the chain's bearer token
// Loopback only; needs wrk and nginx.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { benchWorkspace, CHAIN_PIECES, cpuSeconds, fail, freePort, has, makeToken, median, memorySplit, parseArgs, pillionPolicy, ROOT, roundOrder, rssMb, startNginxUpstream, waitForPort } from './bench-lib.mjs'

const argv = process.argv.slice(2)
const specs = argv.filter((arg) => !arg.startsWith('--'))
const args = parseArgs(argv.filter((arg) => arg.startsWith('--')))
if (args.help || (specs.length === 0 && !args.ladder && !args.pieces)) {
  const lines = readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1)
  console.log(lines.slice(0, lines.findIndex((line) => !line.startsWith('//'))).map((line) => line.replace(/^\/\/ ?/, '')).join('\n'))
  process.exit(args.help ? 0 : 2)
}
const ROUNDS = Number(args.rounds ?? 8)
const DURATION_S = Number(args.duration ?? 2)
const WARMUP_S = Number(args.warmup ?? 6)
for (const command of ['wrk', 'nginx']) if (!has(command)) fail(`${command} is missing (apt-get install -y ${command})`)

const workspace = benchWorkspace('pillion-compare-')
const { work, start } = workspace
const upstreamPort = await startNginxUpstream(workspace)

function policy(listen, admin, chain) {
  const route = chain
    ? 'timeout = "15s"\nretry = { attempts = 2 }\nbulkhead = { max_concurrent = 10000 }\nrate_limit = [ { rate = "10000000/s", key = "client_ip" } ]\n[routes.circuit_breaker]\n'
    : 'timeout = "0s"\n'
  return `[gateway]\nservice = "compare"\nadmin = "127.0.0.1:${admin}"\n[listeners.ingress]\nlisten = "127.0.0.1:${listen}"\ndirection = "ingress"
[upstreams.local]\nendpoints = ["http://127.0.0.1:${upstreamPort}"]\n[observability.access_log]\nto = "off"
[[routes]]\nlistener = "ingress"\npath = "/*"\nupstream = "local"\n${route}`
}

async function startPillion(name, executable, policyText) {
  const port = await freePort()
  const file = join(work, `${name.replace(/\W+/g, '-')}.toml`)
  const admin = await freePort()
  writeFileSync(file, policyText?.({ listen: port, admin }) ?? policy(port, admin, args.chain !== undefined))
  const child = start(resolve(executable), ['run', '-c', file])
  await waitForPort(port, child, name)
  return { name, port, child }
}

async function startNaive(name, executable, steps) {
  const port = await freePort()
  const child = start(executable, [String(port), String(upstreamPort), String(steps)])
  await waitForPort(port, child, name)
  return { name, port, child }
}

const configs = []
if (args.ladder) {
  const outdir = join(work, 'naive-bun')
  const built = spawnSync('node', [join(ROOT, 'scripts/build.mjs'), '--entry=scripts/bench-naive-bun.mjs', `--outdir=${outdir}`], { cwd: ROOT, encoding: 'utf8' })
  if (built.status !== 0) fail(`could not compile scripts/bench-naive-bun.mjs:\n${built.stdout}${built.stderr}`)
  const naive = join(outdir, readdirSync(outdir).find((file) => file.startsWith('pillion-')))
  for (let steps = 0; steps <= 4; steps++) configs.push(await startNaive(steps === 0 ? 'naive bun' : `naive bun +${steps}`, naive, steps))
  configs.push(await startPillion('pillion binary', join(ROOT, 'dist/pillion-linux-x64')))
}
let authorization = []
/** `npm run bench`'s full chain, its access log named after the configuration; options as pillionPolicy's. */
let fullChain
if (args.pieces || args.full) {
  const { jwk, token } = await makeToken()
  authorization = ['-H', `Authorization: Bearer ${token}`]
  fullChain = (name, options = {}) => (at) =>
    pillionPolicy({ ...at, upstreamPort, chain: true, jwk, accessLog: join(work, `access-${name.replace(/\W+/g, '-')}.log`), ...options })
}
if (args.pieces) {
  const executable = specs.shift() ?? join(ROOT, 'dist/pillion-linux-x64')
  const elsewhere = mkdtempSync(join(tmpdir(), 'pillion-compare-log-'))
  process.on('exit', () => rmSync(elsewhere, { recursive: true, force: true }))
  configs.push(await startPillion('chain', executable, fullChain('chain', {})))
  for (const piece of CHAIN_PIECES) configs.push(await startPillion(`no ${piece}`, executable, fullChain(piece, { omit: [piece] })))
  configs.push(await startPillion('log to /dev/null', executable, fullChain('null', { accessLog: '/dev/null' })))
  configs.push(await startPillion('log elsewhere', executable, fullChain('elsewhere', { accessLog: join(elsewhere, 'access.log') })))
  configs.push(await startPillion('bare', executable, (at) => pillionPolicy({ ...at, upstreamPort, chain: false })))
}
for (const spec of specs) {
  const at = spec.indexOf('=')
  if (at < 1) fail(`expected NAME=EXECUTABLE, got ${spec}`)
  const name = spec.slice(0, at)
  configs.push(await startPillion(name, spec.slice(at + 1), fullChain?.(name)))
}

function wrk(config, seconds) {
  const before = cpuSeconds(config.child.pid)
  const result = spawnSync('wrk', ['-t1', '-c32', `-d${seconds}s`, ...authorization, `http://127.0.0.1:${config.port}/`], { encoding: 'utf8' })
  const cpu = cpuSeconds(config.child.pid) - before
  const requests = Number(/(\d+) requests in/.exec(result.stdout)?.[1] ?? NaN)
  if (/Non-2xx/.test(result.stdout) || !(requests > 0)) fail(`${config.name} answered with errors:\n${result.stdout}`)
  return { cpu: (cpu * 1e6) / requests, rps: requests / seconds, memory: args.memory ? memorySplit(config.child.pid) : undefined }
}

const idle = args.memory ? configs.map((config) => memorySplit(config.child.pid)) : []
for (const config of configs) wrk(config, WARMUP_S) // warm-up
const samples = configs.map(() => [])
for (let round = 0; round < ROUNDS; round++) {
  for (const at of roundOrder([...configs.keys()], round)) samples[at][round] = wrk(configs[at], DURATION_S)
}
console.log(`CPU µs per request, wrk -c32, ${ROUNDS} interleaved rounds of ${DURATION_S}s (medians; paired: median of each round's ratio to the first row)`)
for (const [i, config] of configs.entries()) {
  const cpu = samples[i].map((s) => s.cpu)
  const paired = median(cpu.map((value, round) => value / samples[0][round].cpu))
  const spread = `${Math.min(...cpu).toFixed(1)}–${Math.max(...cpu).toFixed(1)}`
  console.log(
    `${config.name.padEnd(18)} ${median(cpu).toFixed(1).padStart(6)} µs  ×first ${paired.toFixed(2)}  rps ${median(samples[i].map((s) => s.rps)).toFixed(0).padStart(6)}  RSS ${rssMb(config.child.pid).toFixed(0).padStart(3)} MB  rounds ${spread}`,
  )
}
if (args.memory) {
  await new Promise((resolve) => setTimeout(resolve, 5000))
  const mb = (kb) => (kb / 1024).toFixed(1).padStart(5)
  const show = (m) => `${mb(m.rss)} = ${mb(m.anon)} + ${mb(m.file)} (${mb(m.code)} ${mb(m.data)})`
  console.log("\nRSS MB = anonymous + file-backed (of which the executable's code, its writable segment)")
  console.log(`${''.padEnd(18)} ${'idle'.padEnd(37)} ${'after each run (medians)'.padEnd(37)} 5 s after the last`)
  for (const [i, config] of configs.entries()) {
    const runs = samples[i].map((s) => s.memory)
    const after = Object.fromEntries(Object.keys(runs[0]).map((key) => [key, median(runs.map((m) => m[key]))]))
    console.log(`${config.name.padEnd(18)} ${show(idle[i])}  ${show(after)}  ${show(memorySplit(config.child.pid))}`)
  }
}
process.exit(0)
