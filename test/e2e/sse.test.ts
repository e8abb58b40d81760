// Server-Sent Events and other responses without a known length stream through unbuffered: each
// event reaches the client before the upstream sends the next (the upstream waits to be told).
import assert from 'node:assert/strict'
import { request as httpRequest } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { deferred, startGateway, startUpstream, targets, type Gateway, type Upstream } from './harness.ts'

const EVENTS = 5

function policy(upstreamUrl: string): string {
  return `
[gateway]
service = "sse"
admin = "127.0.0.1:0"

[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"

[upstreams.local]
endpoints = ["${upstreamUrl}"]

[[routes]]
listener = "ingress"
path = "/events"
upstream = "local"
timeout = "0s"
`
}

for (const target of targets()) {
  describe(`server-sent events on ${target.name}`, { skip: target.missing }, () => {
    let upstream: Upstream
    let gateway: Gateway
    /** The client's receipt of each event, which the upstream awaits before sending the next. */
    let received: Array<{ promise: Promise<void>; resolve: (value: void) => void }> = []

    before(async () => {
      upstream = await startUpstream(async (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
        for (let index = 0; index < EVENTS; index++) {
          res.write(`id: ${index}\ndata: event ${index}\n\n`)
          await received[index]!.promise
        }
        res.end()
      })
      gateway = await startGateway(target, policy(upstream.url))
    })

    after(async () => {
      await gateway?.stop()
      await upstream?.close()
    })

    it('delivers each event before the upstream writes the next', { timeout: 20_000 }, async () => {
      received = Array.from({ length: EVENTS }, () => deferred<void>())
      const seen: string[] = []
      const status = await new Promise<number>((resolve, reject) => {
        const outgoing = httpRequest(`${gateway.listeners.ingress}/events`, { headers: { accept: 'text/event-stream' } }, (res) => {
          res.setEncoding('utf8')
          let buffer = ''
          res.on('data', (chunk: string) => {
            buffer += chunk
            let end: number
            while ((end = buffer.indexOf('\n\n')) !== -1) {
              const event = buffer.slice(0, end)
              buffer = buffer.slice(end + 2)
              seen.push(event)
              // Only now may the upstream go on: a gateway that held the event back would stall here.
              received[seen.length - 1]!.resolve(undefined)
            }
          })
          res.on('end', () => resolve(res.statusCode!))
          res.on('error', reject)
        })
        outgoing.on('error', reject)
        outgoing.end()
      })
      assert.equal(status, 200)
      assert.deepEqual(
        seen,
        Array.from({ length: EVENTS }, (_, index) => `id: ${index}\ndata: event ${index}`),
      )
    })
  })
}
