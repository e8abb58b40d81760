// Connections that cost a gateway without asking it anything: 3,000 idle ones and 200 clients that
// send their headers a byte at a time, while ordinary requests are served beside them.
import assert from 'node:assert/strict'
import { Agent } from 'node:http'
import { connect, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { startGateway, startUpstream, targets, type Gateway, type Upstream } from '../e2e/harness.ts'
import { call, chaosPolicy, drive, percentile, recordFigures, round, tally } from './chaos-kit.ts'

const IDLE = 3000
const SLOW = 200

function open(base: string): Promise<Socket> {
  const url = new URL(base)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname)
    socket.once('connect', () => resolve(socket))
    socket.once('error', reject)
  })
}

for (const t of targets().filter((target) => (process.env.PILLION_CHAOS_TARGETS ?? 'node,bun,binary').split(',').includes(target.name))) {
  describe(`chaos: idle and slow connections [${t.name}]`, { skip: t.missing }, () => {
    let upstream: Upstream
    let gateway: Gateway
    const sockets: Socket[] = []

    before(async () => {
      upstream = await startUpstream((_req, res) => res.end('ok'))
      gateway = await startGateway(t, chaosPolicy('chaos-connections', upstream.url))
    })

    after(async () => {
      for (const socket of sockets) socket.destroy()
      await gateway?.stop()
      await upstream?.close()
    })

    it(`serves requests beside ${IDLE} idle connections and ${SLOW} slow-header clients`, async () => {
      const rssBefore = gateway.rssKb()
      for (let i = 0; i < IDLE; i += 100) sockets.push(...(await Promise.all(Array.from({ length: 100 }, () => open(gateway.listeners.in!)))))
      const slow = await Promise.all(Array.from({ length: SLOW }, () => open(gateway.listeners.in!)))
      sockets.push(...slow)
      let closedByGateway = 0
      for (const socket of sockets) {
        socket.on('error', () => {})
        socket.on('close', () => closedByGateway++)
        socket.setNoDelay(true)
      }
      for (const socket of slow) socket.write('GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ')
      const drip = setInterval(() => {
        for (const socket of slow) if (!socket.destroyed) socket.write('a')
      }, 200)
      const agent = new Agent({ keepAlive: true, maxSockets: 16 })
      let outcomes
      try {
        outcomes = await drive(500, 16, () => call(`${gateway.listeners.in}/served`, { agent }))
      } finally {
        clearInterval(drip)
        agent.destroy()
      }
      assert.deepEqual(tally(outcomes), { 200: 500 })
      assert.equal(gateway.process.exitCode, null)
      recordFigures(t.name, `${IDLE} idle + ${SLOW} slow-header connections`, {
        requests: 500,
        outcomes: tally(outcomes),
        p50_ms: round(percentile(outcomes.map((o) => o.ms), 50)),
        p99_ms: round(percentile(outcomes.map((o) => o.ms), 99)),
        rss_mb_before: round(rssBefore / 1024),
        rss_mb_with_connections: round(gateway.rssKb() / 1024),
        closed_by_gateway_meanwhile: closedByGateway,
      })
    })
  })
}
