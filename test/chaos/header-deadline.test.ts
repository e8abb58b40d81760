// The default header deadline on a listener other hosts can reach, with no key asking for it:
// slowloris clients that keep sending a byte every second, on a new connection or after a first
// request on a kept-alive one, are cut on every target while others are served. Node answers 408
// at 60 s; Bun's server closes a first head at its fixed 10 s and a later one at the 60 s idle
// timeout it is given, without an answer (docs/security.md).
import assert from 'node:assert/strict'
import { Agent } from 'node:http'
import { connect, type Socket } from 'node:net'
import { after, describe, it } from 'node:test'
import { startGateway, startUpstream, targets, type Gateway, type Upstream } from '../e2e/harness.ts'
import { call, chaosPolicy, drive, recordFigures, round, tally } from './chaos-kit.ts'

const SLOW = 20
/** The default deadline is 60 s; a client still open well after it was not cut. */
const GIVE_UP_MS = 100_000

interface SlowClient {
  socket: Socket
  /** What the gateway sent once the slow head had begun. */
  answer: string
  dripping: boolean
  cutAfterMs: Promise<number>
}

const SLOW_HEAD = 'GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: '

/** A client that starts a head and sends one more byte each tick; with `afterRequest`, only once a first request on the connection was answered. */
function slowClient(port: number, afterRequest: boolean): SlowClient {
  const socket = connect(port, '127.0.0.1')
  let startedAt = Date.now()
  const client: SlowClient = { socket, answer: '', dripping: false, cutAfterMs: new Promise((resolve) => socket.once('close', () => resolve(Date.now() - startedAt))) }
  const startDripping = () => {
    startedAt = Date.now()
    client.dripping = true
    socket.write(SLOW_HEAD)
  }
  let first = ''
  socket.on('data', (chunk) => {
    if (client.dripping) client.answer += chunk.toString('latin1')
    else if ((first += chunk.toString('latin1')).endsWith('\r\n\r\nok')) startDripping()
  })
  socket.on('error', () => {})
  socket.once('connect', () => (afterRequest ? socket.write('GET /first HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n') : startDripping()))
  return client
}

const chosen = targets().filter((target) => (process.env.PILLION_CHAOS_TARGETS ?? 'node,bun,binary').split(',').includes(target.name) && target.missing === undefined)

describe('chaos: the default header deadline on an exposed listener', () => {
  let upstream: Upstream | undefined
  const gateways: Gateway[] = []
  const clients: SlowClient[] = []

  after(async () => {
    for (const client of clients) client.socket.destroy()
    await Promise.all(gateways.map((gateway) => gateway.stop()))
    await upstream?.close()
  })

  it(`cuts ${SLOW} slowloris clients per target at the 60 s default while serving others (${chosen.map((t) => t.name).join(', ')})`, { timeout: GIVE_UP_MS + 60_000 }, async () => {
    upstream = await startUpstream((_req, res) => res.end('ok'))
    const policy = chaosPolicy('chaos-header-deadline', upstream.url).replace('listen = "127.0.0.1:0"', 'listen = "0.0.0.0:0"')
    assert.doesNotMatch(policy, /header_timeout|client_timeout/)
    await Promise.all(
      chosen.map(async (target) => {
        const gateway = await startGateway(target, policy)
        gateways.push(gateway)
        const port = Number(new URL(gateway.listeners.in!).port)
        const slow = Array.from({ length: SLOW }, (_, i) => slowClient(port, i % 2 === 1))
        clients.push(...slow)
        const drip = setInterval(() => {
          for (const client of slow) if (client.dripping && !client.socket.destroyed) client.socket.write('a')
        }, 1000)
        const giveUp = setTimeout(() => {
          for (const client of slow) client.socket.destroy()
        }, GIVE_UP_MS)
        const agent = new Agent({ keepAlive: true, maxSockets: 8 })
        try {
          const served = await drive(200, 8, () => call(`http://127.0.0.1:${port}/served`, { agent }))
          assert.deepEqual(tally(served), { 200: 200 }, target.name)
          const cutAfterMs = await Promise.all(slow.map((client) => client.cutAfterMs))
          assert.ok(cutAfterMs.every((ms) => ms < GIVE_UP_MS), `${target.name}: every slow client is cut by the gateway`)
          const answers = slow.map((client) => client.answer.split('\r\n')[0])
          for (const answer of answers) assert.ok(answer === '' || answer === 'HTTP/1.1 408 Request Timeout', `${target.name}: a slow client gets a 408 or nothing, not ${answer}`)
          const [fresh, keptAlive] = [cutAfterMs.filter((_, i) => i % 2 === 0), cutAfterMs.filter((_, i) => i % 2 === 1)]
          const servedAfter = await drive(50, 8, () => call(`http://127.0.0.1:${port}/served`, { agent }))
          assert.deepEqual(tally(servedAfter), { 200: 50 }, target.name)
          assert.equal(gateway.process.exitCode, null)
          recordFigures(target.name, `${SLOW} slowloris clients, exposed listener, default deadline`, {
            first_head_cut_after_s: `${round(Math.min(...fresh) / 1000)}–${round(Math.max(...fresh) / 1000)}`,
            later_head_cut_after_s: `${round(Math.min(...keptAlive) / 1000)}–${round(Math.max(...keptAlive) / 1000)}`,
            answered_408: answers.filter((answer) => answer !== '').length,
            served_meanwhile: tally(served),
          })
        } finally {
          clearInterval(drip)
          clearTimeout(giveUp)
          agent.destroy()
        }
      }),
    )
  })
})
