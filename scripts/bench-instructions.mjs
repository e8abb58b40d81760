#!/usr/bin/env node
// User-space instructions per request of Pillion executables, counted by valgrind's cachegrind: a
// figure that a busy machine moves far less than CPU time, for before/after a change to the hot path
// of a few percent, which `bench:compare` cannot resolve on a shared 2-vCPU machine.
//
//   node scripts/bench-instructions.mjs [--rounds=2] [--requests=2000,6000] [--chain] NAME=EXECUTABLE ...
//
//   NAME=EXECUTABLE   a Pillion executable (`EXECUTABLE run -c POLICY`): the binary, or a shell script
//                     that execs `node dist/pillion.js "$@"` from another build
//   --chain           `npm run bench`'s full chain (JWT, rate limit, timeout, retry, breaker, bulkhead,
//                     access log to a file) instead of its bare route
//   --requests=A,B    each count is one run under cachegrind; the figure is (I(B) - I(A)) / (B - A), so
//                     start-up, warm-up and exit cancel out
//   --rounds          the executables alternate this many times; every round's figure is printed
//
// Every request carries the bench's bearer token (h2load --h1, 8 connections, against NGINX `return
// 200` on 127.0.0.1). Counted: every thread of the process in user space (JIT code included); not
// counted: the kernel's side of syscalls. A JIT's counts still move with the machine's load by a few
// percent (its compiler threads and collector run by the clock), so alternate the builds and read
// the spread. Bun's own `fetch` cannot be counted this way: valgrind 3.19 does not know the
// epoll_pwait2 its HTTP client thread calls. Loopback only; needs valgrind, h2load (nghttp2-client)
// and nginx; about 40 s per executable and round.
import { spawnSync } from 'node:child_process'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { benchWorkspace, canConnect, fail, freePort, has, makeToken, median, parseArgs, pillionPolicy, startNginxUpstream } from './bench-lib.mjs'

const argv = process.argv.slice(2)
const specs = argv.filter((arg) => !arg.startsWith('--'))
const args = parseArgs(argv.filter((arg) => arg.startsWith('--')))
if (args.help || specs.length === 0) {
  const lines = readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1)
  console.log(lines.slice(0, lines.findIndex((line) => !line.startsWith('//'))).map((line) => line.replace(/^\/\/ ?/, '')).join('\n'))
  process.exit(args.help ? 0 : 2)
}
const ROUNDS = Number(args.rounds ?? 2)
const [FEW, MANY] = (args.requests ?? '2000,6000').split(',').map(Number)
if (!(FEW > 0 && MANY > FEW && ROUNDS > 0)) fail('--requests takes two counts, the second larger; --rounds at least 1')
for (const [command, pkg] of [['valgrind', 'valgrind'], ['h2load', 'nghttp2-client'], ['nginx', 'nginx']]) {
  if (!has(command)) fail(`${command} is missing (apt-get install -y ${pkg})`)
}
const executables = specs.map((spec) => {
  const at = spec.indexOf('=')
  if (at < 1) fail(`expected NAME=EXECUTABLE, got ${spec}`)
  return { name: spec.slice(0, at), path: resolve(spec.slice(at + 1)) }
})

const workspace = benchWorkspace('pillion-instructions-')
const { work, start } = workspace
const upstreamPort = await startNginxUpstream(workspace)
const { jwk, token } = await makeToken()

/** waitForPort, polling every 100 ms: a connect a millisecond takes the CPU the process under valgrind starts with. */
async function listening(port, child, what) {
  for (let tries = 0; tries < 600; tries++) {
    if (child.exitCode !== null || child.signalCode !== null) fail(`${what} exited (${child.exitCode ?? child.signalCode}) before listening`)
    if (await canConnect(port)) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  fail(`${what}: nothing listens on ${port} after 60 s`)
}

/** One run under cachegrind: the process's user-space instructions over `requests` requests and its start and exit. */
async function count(executable, requests) {
  const listen = await freePort()
  const admin = await freePort()
  const policy = join(work, 'policy.toml')
  writeFileSync(policy, pillionPolicy({ listen, admin, upstreamPort, chain: args.chain !== undefined, jwk, accessLog: join(work, 'access.log') }))
  const out = join(work, 'cachegrind.out')
  rmSync(out, { force: true })
  const grind = ['--tool=cachegrind', '--cache-sim=no', '--trace-children=yes', '--smc-check=all-non-file', `--cachegrind-out-file=${out}`, executable, 'run', '-c', policy]
  const child = start('valgrind', grind)
  const exited = new Promise((resolve) => child.once('exit', resolve))
  await listening(listen, child, `${executable} under valgrind`)
  const load = spawnSync('h2load', ['--h1', '-c', '8', '-n', String(requests), '-H', `authorization: Bearer ${token}`, `http://127.0.0.1:${listen}/`], { encoding: 'utf8' })
  if (!load.stdout.includes(`${requests} succeeded, 0 failed`)) fail(`h2load through ${executable}: ${load.stdout.match(/requests:.*/)?.[0] ?? load.stderr}`)
  child.kill('SIGTERM')
  await exited
  const summary = readFileSync(out, 'utf8').match(/^summary: (\d+)/m)
  if (summary === null) fail(`no cachegrind summary for ${executable}`)
  return Number(summary[1])
}

const perRequest = new Map(executables.map(({ name }) => [name, []]))
console.log(`user-space instructions per request, cachegrind, (I(${MANY}) - I(${FEW})) / ${MANY - FEW}, ${args.chain ? 'full chain' : 'bare route'}, ${ROUNDS} alternating rounds`)
for (let round = 1; round <= ROUNDS; round++) {
  for (const { name, path } of executables) {
    const figure = ((await count(path, MANY)) - (await count(path, FEW))) / (MANY - FEW)
    perRequest.get(name).push(figure)
    console.log(`  round ${round}  ${name.padEnd(16)} ${Math.round(figure)}`)
  }
}
const first = median(perRequest.get(executables[0].name))
for (const { name } of executables) {
  const figures = perRequest.get(name)
  const middle = median(figures)
  console.log(`${name.padEnd(16)} ${String(Math.round(middle)).padStart(8)}  ×first ${(middle / first).toFixed(3)}  rounds ${Math.round(Math.min(...figures))}–${Math.round(Math.max(...figures))}`)
}
process.exit(0)
