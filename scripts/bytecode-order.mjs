#!/usr/bin/env node
// Writes the bytecode order files scripts/build.mjs lays an executable's bytecode out by
// (`bun build --bytecode-order=DIR/chain.order,DIR/bare.order`): the functions a short run of the
// executable used, in the order it first used them. With them together at the front, a running gateway reads ~2 MB of its
// bytecode section instead of ~5 MB, which is that much less of the executable in its RSS
// (docs/performance.md, "Binary RSS").
//
//   node scripts/bytecode-order.mjs EXECUTABLE DIR     (writes DIR/chain.order and DIR/bare.order)
//
// The run: `pillion run` on the bench's two policies (scripts/bench-lib.mjs: a bare route, and the
// full chain with JWT, rate limit, timeout, retry, circuit breaker, bulkhead, metrics and an access
// log) in front of a local upstream, a few hundred requests through each and a scrape of /metrics,
// then SIGTERM, on which Bun writes the file named by BUN_BYTECODE_ORDER_OUT. Loopback only; about
// a second.
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, makeToken, pillionPolicy } from './bench-lib.mjs'

const [exe, out] = process.argv.slice(2)
if (!exe || !out) {
  console.error('usage: bytecode-order EXECUTABLE DIR')
  process.exit(2)
}

const REQUESTS = 300
const IN_FLIGHT = 8
const DEADLINE_MS = 20_000

const work = mkdtempSync(join(tmpdir(), 'pillion-order-'))
const upstream = createServer((_req, res) => res.end('ok'))
const upstreamPort = await new Promise((resolve) => upstream.listen(0, '127.0.0.1', () => resolve(upstream.address().port)))
const { jwk, token } = await makeToken()
const children = []
const timer = setTimeout(() => {
  console.error(`bytecode-order: no result within ${DEADLINE_MS} ms`)
  for (const child of children) child.kill('SIGKILL')
  process.exit(1)
}, DEADLINE_MS)

/** One `pillion run` on the bench's policy, driven until it exits, writing DIR/<bare|chain>.order. */
async function orderOf(chain) {
  const name = chain ? 'chain' : 'bare'
  const [listen, admin] = [await freePort(), await freePort()]
  const policy = join(work, `${name}.toml`)
  writeFileSync(policy, pillionPolicy({ listen, admin, upstreamPort, chain, jwk, accessLog: join(work, 'access.log') }))
  const file = join(out, `${name}.order`)
  const child = spawn(exe, ['run', '-c', policy], { env: { ...process.env, BUN_BYTECODE_ORDER_OUT: file }, stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  let log = ''
  child.stderr.on('data', (chunk) => (log = (log + chunk).slice(-4000)))
  const exited = new Promise((resolve) => child.once('exit', resolve))
  await new Promise((resolve, reject) => {
    let seen = ''
    child.stdout.on('data', (chunk) => {
      seen += chunk
      if (/ ready in \d+ms/.test(seen)) resolve()
    })
    exited.then((code) => reject(new Error(`pillion (${name}) exited (${code}) before it was ready:\n${log}`)))
  })
  let sent = 0
  const worker = async () => {
    while (sent++ < REQUESTS) {
      const response = await fetch(`http://127.0.0.1:${listen}/`, { headers: { authorization: `Bearer ${token}` } })
      await response.text()
      if (response.status !== 200) throw new Error(`the ${name} route answered ${response.status}`)
    }
  }
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker))
  await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text()
  child.kill('SIGTERM')
  await exited
  if (!existsSync(file)) throw new Error(`pillion (${name}) exited without writing ${file}`)
}

try {
  await Promise.all([orderOf(true), orderOf(false)])
} catch (error) {
  console.error(`bytecode-order: ${error.message}`)
  for (const child of children) child.kill('SIGKILL')
  process.exitCode = 1
} finally {
  clearTimeout(timer)
  upstream.close()
  rmSync(work, { recursive: true, force: true })
}
