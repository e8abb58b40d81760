// Upstreams that fail in the middle of things: a body cut under each framing, every first try
// reset, a connection that is accepted and never answered, and one that stalls after its headers.
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { startGateway, startUpstream, targets, type Gateway, type Upstream } from '../e2e/harness.ts'
import { call, drive, percentile, recordFigures, round, tally } from './chaos-kit.ts'

const PART = Buffer.alloc(256 * 1024, 'x')
const DECLARED = 1024 * 1024

/** A raw TCP upstream whose answer, by the request's path, goes wrong in one chosen way. */
async function startRawUpstream(): Promise<{ server: TcpServer; url: string; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>()
  const server = createTcpServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let head = ''
    socket.on('data', (chunk) => {
      if (head.includes('\r\n\r\n')) return
      head += chunk.toString('latin1')
      if (!head.includes('\r\n\r\n')) return
      const path = head.split(' ')[1] ?? ''
      if (path.startsWith('/cut/cl')) {
        socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${DECLARED}\r\n\r\n`)
        socket.write(PART, () => socket.destroy())
      } else if (path.startsWith('/cut/chunked')) {
        socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n')
        socket.write(`${PART.length.toString(16)}\r\n`)
        socket.write(PART, () => socket.destroy())
      } else if (path.startsWith('/cut/close')) {
        // No length and no chunks: only a reset (not a FIN, which is how such a body ends) can say it was cut.
        socket.write('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n')
        socket.write(PART, () => socket.resetAndDestroy())
      } else if (path.startsWith('/stall')) {
        socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${DECLARED}\r\n\r\n`)
        socket.write(PART)
      }
      // "/silent": accepted, read, never answered.
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, sockets }
}

for (const t of targets().filter((target) => (process.env.PILLION_CHAOS_TARGETS ?? 'node,bun,binary').split(',').includes(target.name))) {
  describe(`chaos: upstream faults [${t.name}]`, { skip: t.missing }, () => {
    let raw: Awaited<ReturnType<typeof startRawUpstream>>
    let flaky: Upstream
    let resets = 0
    let gateway: Gateway

    before(async () => {
      raw = await startRawUpstream()
      const seen = new Set<string>()
      flaky = await startUpstream((req, res) => {
        const id = String(req.headers['x-request-id'])
        if (!seen.has(id)) {
          seen.add(id)
          resets++
          req.socket.resetAndDestroy()
          return
        }
        req.resume()
        res.end('second try')
      })
      gateway = await startGateway(
        t,
        `
[gateway]
service = "chaos-upstreams"
admin = "127.0.0.1:0"
[listeners.in]
listen = "127.0.0.1:0"
direction = "ingress"
[upstreams.raw]
endpoints = ["${raw.url}"]
outlier = false
[upstreams.flaky]
endpoints = ["${flaky.url}"]
outlier = false
[[routes]]
name = "cut"
listener = "in"
path = "/cut/*"
upstream = "raw"
timeout = "5s"
[[routes]]
name = "silent"
listener = "in"
path = "/silent/*"
upstream = "raw"
timeout = "300ms"
[[routes]]
name = "stall"
listener = "in"
path = "/stall/*"
upstream = "raw"
timeout = "500ms"
[[routes]]
name = "flaky"
listener = "in"
path = "/flaky/*"
upstream = "flaky"
retry = { attempts = 2, on = ["reset"], backoff = { base = "1ms", max = "5ms" }, budget = { ratio = 1.0, min_per_second = 1000 } }
`,
      )
    })

    after(async () => {
      await gateway?.stop()
      for (const socket of raw?.sockets ?? []) socket.destroy()
      raw?.server.close()
      await flaky?.close()
    })

    for (const framing of ['cl', 'chunked', 'close'] as const) {
      it(`an upstream dying mid-body (${framing === 'cl' ? 'Content-Length' : framing === 'chunked' ? 'chunked' : 'close-delimited, reset'}) never reaches the client as a whole answer`, async () => {
        const outcomes = await drive(20, 4, () => call(`${gateway.listeners.in}/cut/${framing}`))
        const whole = outcomes.filter((o) => o.status >= 200 && o.status < 300 && o.complete)
        assert.deepEqual(whole, [], JSON.stringify(tally(outcomes)))
        recordFigures(t.name, `cut body, ${framing}`, { requests: outcomes.length, outcomes: tally(outcomes), max_bytes_before_cut: Math.max(...outcomes.map((o) => o.bytes)) })
      })
    }

    it('every first try reset: the retry absorbs all of them', async () => {
      const before = resets
      const outcomes = await drive(300, 16, () => call(`${gateway.listeners.in}/flaky/x`))
      assert.deepEqual(tally(outcomes), { 200: 300 })
      assert.equal(resets - before, 300)
      recordFigures(t.name, 'every first try reset', { requests: 300, resets: resets - before, outcomes: tally(outcomes), p99_ms: round(percentile(outcomes.map((o) => o.ms), 99)) })
    })

    it('an upstream that accepts and never answers gets 504 at the route timeout, every time', async () => {
      const outcomes = await drive(40, 8, () => call(`${gateway.listeners.in}/silent/x`))
      assert.deepEqual(tally(outcomes), { 504: 40 })
      recordFigures(t.name, 'accepts, never answers (timeout 300ms)', { requests: 40, outcomes: tally(outcomes), p50_ms: round(percentile(outcomes.map((o) => o.ms), 50)), max_ms: round(Math.max(...outcomes.map((o) => o.ms))) })
    })

    it('an upstream that stalls after its headers: the client sees a cut body at the route timeout', async () => {
      const outcomes = await drive(20, 4, () => call(`${gateway.listeners.in}/stall/x`, { headers: { 'x-request-id': randomUUID() } }))
      assert.deepEqual(outcomes.filter((o) => o.status === 200 && o.complete), [])
      recordFigures(t.name, 'stalls after headers (timeout 500ms)', { requests: 20, outcomes: tally(outcomes), max_ms: round(Math.max(...outcomes.map((o) => o.ms))) })
    })
  })
}
