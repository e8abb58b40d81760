import assert from 'node:assert/strict'
import { Agent, request as httpRequest, type ServerResponse } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { deferred, request, startGateway, startUpstream, targets, type Gateway, type Reply, type Upstream } from './harness.ts'

/** Generous: the gateway peaks at 60-80 MB here on every runtime; the streaming test uses the same bound. */
const RSS_LIMIT_KB = 150 * 1024
const FLOOD = 2000

/** An upstream that holds every request until released, and lets the test await arrivals. */
async function holdingUpstream() {
  let holding = true
  let arrivals = 0
  const held: ServerResponse[] = []
  const waiters: Array<{ count: number; resolve: () => void }> = []
  const upstream = await startUpstream((_req, res) => {
    arrivals++
    for (const waiter of waiters.filter((w) => arrivals >= w.count)) {
      waiters.splice(waiters.indexOf(waiter), 1)
      waiter.resolve()
    }
    if (holding) held.push(res)
    else res.end('answered')
  })
  return {
    upstream,
    get arrivals() {
      return arrivals
    },
    arrived(count: number): Promise<void> {
      if (arrivals >= count) return Promise.resolve()
      const { promise, resolve } = deferred()
      waiters.push({ count, resolve })
      return promise
    },
    /** Answers everything held, and from now on everything at once. */
    release() {
      holding = false
      for (const res of held.splice(0)) res.end('released')
    },
  }
}

type Holder = Awaited<ReturnType<typeof holdingUpstream>>

function policy(hanging: Holder, flooded: Holder, normal: Upstream): string {
  return `
[gateway]
service = "bulkhead-test"
admin = "127.0.0.1:0"
shutdown_grace = "2s"

[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"

[upstreams.hanging]
endpoints = ["${hanging.upstream.url}"]

[upstreams.flooded]
endpoints = ["${flooded.upstream.url}"]

[upstreams.normal]
endpoints = ["${normal.url}"]

[[routes]]
name = "a"
listener = "ingress"
path = "/a/*"
upstream = "hanging"

[routes.bulkhead]
max_concurrent = 2
max_queue = 2
queue_timeout = "200ms"

[[routes]]
name = "b"
listener = "ingress"
path = "/b/*"
upstream = "normal"

# Like "a", but no queued request times out during the flood, so the count of 503s is exact.
[[routes]]
name = "flood"
listener = "ingress"
path = "/flood/*"
upstream = "flooded"

[routes.bulkhead]
max_concurrent = 2
max_queue = 2
queue_timeout = "10s"
`
}

/** Resolves once `count` of the replies have come back; the others may still be pending. */
function firstReplies<T>(replies: Array<Promise<T>>, count: number): Promise<T[]> {
  const done: T[] = []
  const enough = deferred<T[]>()
  for (const reply of replies) {
    void reply.then((r) => {
      done.push(r)
      if (done.length === count) enough.resolve(done)
    })
  }
  return enough.promise
}

const errorCode = (reply: Reply) => reply.headers['x-pillion-error']

for (const target of targets()) {
  describe(`bulkhead on ${target.name}`, { skip: target.missing }, () => {
    let hanging: Holder
    let flooded: Holder
    let normal: Upstream
    let gateway: Gateway
    let ingress: string

    before(async () => {
      hanging = await holdingUpstream()
      flooded = await holdingUpstream()
      normal = await startUpstream((_req, res) => res.end('normal'))
      gateway = await startGateway(target, policy(hanging, flooded, normal))
      ingress = gateway.listeners.ingress!
    })

    after(async () => {
      hanging?.release()
      flooded?.release()
      const code = await gateway?.stop()
      await hanging?.upstream.close()
      await flooded?.upstream.close()
      await normal?.close()
      assert.equal(code, 0, `gateway exit code; stderr:\n${gateway?.stderr.slice(-20).join('\n')}`)
    })

    it('caps a hanging route at its slots and queue while another route answers normally', { timeout: 10_000 }, async () => {
      const replies = Array.from({ length: 20 }, (_, i) => request(`${ingress}/a/${i}`))
      await hanging.arrived(2)

      const others = await Promise.all(Array.from({ length: 5 }, (_, i) => request(`${ingress}/b/${i}`)))
      assert.deepEqual(
        others.map((reply) => [reply.status, reply.body.toString()]),
        Array.from({ length: 5 }, () => [200, 'normal']),
      )

      // All but the two in flight are answered while the upstream still holds those two.
      const refused = await firstReplies(replies, 18)
      assert.equal(hanging.arrivals, 2)
      for (const reply of refused) {
        assert.equal(reply.status, 503)
        assert.equal(errorCode(reply), 'bulkhead_full')
        assert.equal(reply.json().code, 'bulkhead_full')
      }
      const messages = refused.map((reply) => reply.json().message as string)
      assert.equal(messages.filter((m) => /queue of 2 is full/.test(m)).length, 16, messages.join('\n'))
      assert.equal(messages.filter((m) => /within 200ms/.test(m)).length, 2, messages.join('\n'))

      hanging.release()
      const all = await Promise.all(replies)
      assert.equal(all.filter((reply) => reply.status === 200 && reply.body.toString() === 'released').length, 2)

      // Every slot came back: a full house of two running and two queued all get through.
      const again = await Promise.all(Array.from({ length: 4 }, (_, i) => request(`${ingress}/a/again-${i}`)))
      assert.deepEqual(
        again.map((reply) => reply.status),
        [200, 200, 200, 200],
      )
      assert.equal(hanging.arrivals, 6)
    })

    it(`keeps memory and the queue bounded under a flood of ${FLOOD} requests`, { timeout: 20_000 }, async () => {
      const agent = new Agent({ keepAlive: true, maxSockets: 64 })
      const replies = Array.from({ length: FLOOD }, (_, i) => get(agent, `${ingress}/flood/${i}`))
      const refused = await firstReplies(replies, FLOOD - 4)
      await flooded.arrived(2)
      // Two running and two queued: had the queue ever held a third, fewer would have been refused.
      assert.equal(flooded.arrivals, 2)
      assert.equal(refused.filter((reply) => reply.status === 503 && reply.code === 'bulkhead_full').length, FLOOD - 4)
      const peak = gateway.peakRssKb()
      assert.ok(peak < RSS_LIMIT_KB, `peak RSS ${Math.round(peak / 1024)} MB`)

      flooded.release()
      const all = await Promise.all(replies)
      assert.equal(all.filter((reply) => reply.status === 200).length, 4)
      assert.equal(flooded.arrivals, 4)
      agent.destroy()
    })
  })
}

/** A GET over a shared keep-alive agent: 2,000 fresh connections would test the kernel, not the gateway. */
function get(agent: Agent, url: string): Promise<{ status: number; code: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent }, (res) => {
      res.resume()
      res.on('error', reject)
      res.on('end', () => resolve({ status: res.statusCode!, code: res.headers['x-pillion-error'] as string | undefined }))
    })
    req.on('error', reject)
    req.end()
  })
}
