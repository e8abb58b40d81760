#!/usr/bin/env node
// Writes the bytecode order file scripts/build.mjs lays an executable's bytecode out by
// (`bun build --bytecode-order`): the functions a short run of the executable used, in the order
// it first used them. With them together at the front, a running gateway reads ~2 MB of its
// bytecode section instead of ~5 MB, which is that much less of the executable in its RSS
// (docs/performance.md, "Binary RSS").
//
//   node scripts/bytecode-order.mjs EXECUTABLE OUT_FILE
//
// The run: `pillion run` with a bare route and a route with the usual policies (timeout, retry,
// rate limit, circuit breaker, bulkhead, access log, metrics) in front of a local upstream, a few
// hundred requests through each and a scrape of /metrics, then SIGTERM, on which Bun writes the file
// named by BUN_BYTECODE_ORDER_OUT. Loopback only; about a second.
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const [exe, out] = process.argv.slice(2)
if (!exe || !out) {
  console.error('usage: bytecode-order EXECUTABLE OUT_FILE')
  process.exit(2)
}

const REQUESTS = 300
const IN_FLIGHT = 8
const DEADLINE_MS = 20_000

const listen = (server) => new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)))
async function freePort() {
  const server = createServer()
  const port = await listen(server)
  await new Promise((resolve) => server.close(resolve))
  return port
}

const upstream = createServer((_req, res) => res.end('ok'))
const upstreamPort = await listen(upstream)
const [port, admin] = [await freePort(), await freePort()]
const work = mkdtempSync(join(tmpdir(), 'pillion-order-'))
const policy = join(work, 'policy.toml')
writeFileSync(
  policy,
  `[gateway]
service = "bytecode-order"
admin = "127.0.0.1:${admin}"

[listeners.ingress]
listen = "127.0.0.1:${port}"
direction = "ingress"

[upstreams.local]
endpoints = ["http://127.0.0.1:${upstreamPort}"]

[observability.access_log]
to = "${join(work, 'access.log')}"

[[routes]]
listener = "ingress"
path = "/bare/*"
upstream = "local"

[[routes]]
listener = "ingress"
path = "/*"
upstream = "local"
timeout = "15s"
rate_limit = [ { rate = "10000000/s", key = "client_ip" } ]
retry = { attempts = 2 }
bulkhead = { max_concurrent = 10000 }

[routes.circuit_breaker]
`,
)

const child = spawn(exe, ['run', '-c', policy], { env: { ...process.env, BUN_BYTECODE_ORDER_OUT: out }, stdio: ['ignore', 'pipe', 'pipe'] })
let log = ''
child.stderr.on('data', (chunk) => (log = (log + chunk).slice(-4000)))
const exited = new Promise((resolve) => child.once('exit', resolve))
const timer = setTimeout(() => {
  console.error(`bytecode-order: no result within ${DEADLINE_MS} ms\n${log}`)
  child.kill('SIGKILL')
  process.exit(1)
}, DEADLINE_MS)

try {
  await new Promise((resolve, reject) => {
    let seen = ''
    child.stdout.on('data', (chunk) => {
      seen += chunk
      if (/ ready in \d+ms/.test(seen)) resolve()
    })
    exited.then((code) => reject(new Error(`pillion exited (${code}) before it was ready:\n${log}`)))
  })
  for (const path of ['/bare/', '/']) {
    let next = 0
    const worker = async () => {
      while (next++ < REQUESTS) {
        const response = await fetch(`http://127.0.0.1:${port}${path}`)
        await response.text()
        if (response.status !== 200) throw new Error(`${path} answered ${response.status}`)
      }
    }
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker))
  }
  await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text()
  child.kill('SIGTERM')
  await exited
  if (!existsSync(out)) throw new Error(`pillion exited without writing ${out}`)
} catch (error) {
  console.error(`bytecode-order: ${error.message}`)
  child.kill('SIGKILL')
  process.exitCode = 1
} finally {
  clearTimeout(timer)
  upstream.close()
  rmSync(work, { recursive: true, force: true })
}
