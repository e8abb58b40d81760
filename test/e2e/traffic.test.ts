import assert from 'node:assert/strict'
import { Agent, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { closedPort, deferred, readBody, request, startGateway, startUpstream, targets, type Gateway, type Upstream } from './harness.ts'

/**
 * Version routing, mirroring, fault injection and the audit trail, against the gateway as a real
 * process. Nothing here waits on the clock: a held request is an unanswered one, a copy's arrival is
 * an event, and "nothing more will arrive" is known once the gateway process has exited.
 */

interface Seen {
  url: string
  headers: IncomingMessage['headers']
  body: string
}

/** An upstream that names itself in every answer and remembers what it was sent. */
function versionServer(version: string, seen: Seen[]) {
  return async (req: IncomingMessage, res: ServerResponse) => {
    const body = (await readBody(req)).toString()
    seen.push({ url: req.url!, headers: req.headers, body })
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end(version)
  }
}

/** Resolves when `count` items have arrived; each arrival calls notify(). */
class Arrivals<T> {
  readonly items: T[] = []
  #waiters: Array<{ count: number; resolve: () => void }> = []
  add(item: T): void {
    this.items.push(item)
    for (const waiter of [...this.#waiters]) {
      if (this.items.length >= waiter.count) {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1)
        waiter.resolve()
      }
    }
  }
  until(count: number): Promise<T[]> {
    if (this.items.length >= count) return Promise.resolve(this.items)
    return new Promise((resolve) => this.#waiters.push({ count, resolve: () => resolve(this.items) }))
  }
}

/** Many requests over a few kept-alive connections, `concurrency` at a time. */
async function hammer(url: string, total: number, concurrency: number, headersOf: (i: number) => Record<string, string> = () => ({})): Promise<string[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency })
  const answers = new Array<string>(total)
  let next = 0
  const worker = async () => {
    for (let i = next++; i < total; i = next++) {
      answers[i] = await new Promise<string>((resolve, reject) => {
        const req = httpRequest(url, { agent, headers: headersOf(i) }, (res) => {
          let body = ''
          res.setEncoding('utf8')
          res.on('data', (chunk: string) => (body += chunk))
          res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`status ${res.statusCode}: ${body}`))))
          res.on('error', reject)
        })
        req.on('error', reject)
        req.end()
      })
    }
  }
  try {
    await Promise.all(Array.from({ length: concurrency }, worker))
  } finally {
    agent.destroy()
  }
  return answers
}

const count = (answers: string[], value: string) => answers.filter((answer) => answer === value).length

function gatewaySection(name: string): string {
  return `
[gateway]
service = "${name}"
admin = "127.0.0.1:0"
shutdown_grace = "5s"

[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"
`
}

for (const target of targets()) {
  describe(`version routing, mirroring and faults on ${target.name}`, { skip: target.missing, timeout: 300_000 }, () => {
    const v1Seen: Seen[] = []
    const v2Seen: Seen[] = []
    const shadowSeen = new Arrivals<Seen>()
    /** Shadow requests asked to hang, answered when the suite ends. */
    const held: ServerResponse[] = []
    let v1: Upstream
    let v2: Upstream
    let shadow: Upstream
    let gateway: Gateway
    let base: string

    before(async () => {
      v1 = await startUpstream(versionServer('v1', v1Seen))
      v2 = await startUpstream(versionServer('v2', v2Seen))
      shadow = await startUpstream(async (req, res) => {
        const body = (await readBody(req)).toString()
        const url = new URL(req.url!, 'http://shadow')
        if (url.searchParams.has('hold')) held.push(res)
        else if (url.searchParams.has('fail')) res.writeHead(500).end('shadow failed')
        else res.end('shadow')
        shadowSeen.add({ url: req.url!, headers: req.headers, body })
      })
      gateway = await startGateway(
        target,
        `${gatewaySection('traffic')}
[upstreams.v1]
endpoints = ["${v1.url}"]

[upstreams.v2]
endpoints = ["${v2.url}"]

[upstreams.shadow]
endpoints = ["${shadow.url}"]

[upstreams.nowhere]
endpoints = ["http://127.0.0.1:${await closedPort()}"]

[defaults]
timeout = "10s"

[[routes]]
name = "orders-pinned"
listener = "ingress"
path = "/orders/*"
headers = { "x-version" = "v2" }
upstream = "v2"

[[routes]]
name = "orders"
listener = "ingress"
path = "/orders/*"
sticky = "header:x-user"
[[routes.split]]
upstream = "v1"
weight = 90
[[routes.split]]
upstream = "v2"
weight = 10

[[routes]]
name = "mirrored"
listener = "ingress"
path = "/mirrored/*"
upstream = "v1"
mirror = { upstream = "shadow", timeout = "1m" }

[[routes]]
name = "mirror-down"
listener = "ingress"
path = "/mirror-down/*"
upstream = "v1"
mirror = { upstream = "nowhere" }

[[routes]]
name = "faulty"
listener = "ingress"
path = "/faulty/*"
upstream = "v1"
fault = { header_control = true }

[[routes]]
name = "faulty-deadline"
listener = "ingress"
path = "/deadline/*"
upstream = "v1"
timeout = "300ms"
fault = { header_control = true }

[[routes]]
name = "broken"
listener = "ingress"
path = "/broken/*"
upstream = "v1"
fault = { abort = { percent = 100, status = 503 } }

[[routes]]
name = "retried"
listener = "ingress"
path = "/retried/*"
upstream = "v1"
retry = { attempts = 3, on = ["5xx"], backoff = { base = "1ms", max = "2ms" } }
fault = { header_control = true }
`,
      )
      base = gateway.listeners.ingress!
    })

    after(async () => {
      for (const res of held) res.end()
      await gateway?.stop()
      await Promise.all([v1?.close(), v2?.close(), shadow?.close()])
    })

    it('splits 10,000 requests 90/10 within five standard deviations', async () => {
      const n = 10_000
      const answers = await hammer(`${base}/orders/list`, n, 32)
      const toV2 = count(answers, 'v2')
      assert.equal(toV2 + count(answers, 'v1'), n)
      const sigma = Math.sqrt(n * 0.1 * 0.9) // 30
      assert.ok(Math.abs(toV2 - n * 0.1) < 5 * sigma, `v2 answered ${toV2} of ${n}, expected 1000 ± ${Math.round(5 * sigma)}`)
    })

    it('keeps each user on one version (sticky by header), and both versions get users', async () => {
      const users = 400
      const rounds = 3
      const answers = await hammer(`${base}/orders/mine`, users * rounds, 32, (i) => ({ 'x-user': `user-${i % users}` }))
      const versionOf = new Map<string, string>()
      for (const [i, answer] of answers.entries()) {
        const user = `user-${i % users}`
        const before = versionOf.get(user)
        if (before === undefined) versionOf.set(user, answer)
        else assert.equal(answer, before, `${user} moved from ${before} to ${answer}`)
      }
      const onV2 = [...versionOf.values()].filter((version) => version === 'v2').length
      // Binomial over users: 40 ± 5 × 6.
      assert.ok(onV2 > 10 && onV2 < 70, `${onV2} of ${users} users on v2`)
    })

    it('a header match pins a request to a version', async () => {
      const answers = await hammer(`${base}/orders/x`, 50, 8, () => ({ 'x-version': 'v2' }))
      assert.equal(count(answers, 'v2'), 50)
    })

    // The copy may hang for a minute: a client kept waiting for it fails this test's own timeout.
    it('mirrors a copy marked x-pillion-shadow; the client has its answer while the copy hangs', { timeout: 30_000 }, async () => {
      const arrived = shadowSeen.until(shadowSeen.items.length + 1)
      const reply = await request(`${base}/mirrored/a?hold=1&id=slow`)
      assert.equal(reply.status, 200)
      assert.equal(reply.body.toString(), 'v1')
      const copy = (await arrived).find((seen) => seen.url.includes('id=slow'))!
      assert.equal(copy.url, '/mirrored/a?hold=1&id=slow')
      assert.equal(copy.headers['x-pillion-shadow'], '1')
      assert.equal(copy.headers['x-request-id'], reply.headers['x-request-id'])
      assert.equal(held.length, 1, 'the copy is still unanswered')
      const original = v1Seen.find((seen) => seen.url.includes('id=slow'))!
      assert.equal(original.headers['x-pillion-shadow'], undefined)
    })

    it('a failing mirror is invisible to the client; bodies are copied', async () => {
      const arrived = shadowSeen.until(shadowSeen.items.length + 1)
      const reply = await request(`${base}/mirrored/b?fail=1&id=post`, { method: 'POST', body: 'payload' })
      assert.equal(reply.status, 200)
      assert.equal(reply.body.toString(), 'v1')
      const copy = (await arrived).find((seen) => seen.url.includes('id=post'))!
      assert.equal(copy.body, 'payload')
      assert.equal(v1Seen.find((seen) => seen.url.includes('id=post'))!.body, 'payload')
      const refused = await request(`${base}/mirror-down/c`)
      assert.equal(refused.status, 200, 'a mirror that refuses connections changes nothing')
      assert.equal(refused.body.toString(), 'v1')
    })

    it('header control: an injected abort answers as the upstream would, without calling it', async () => {
      const before = v1Seen.length
      const reply = await request(`${base}/faulty/x`, { headers: { 'x-pillion-fault-abort': '503' } })
      assert.equal(reply.status, 503)
      assert.equal(reply.headers['x-pillion-fault'], 'abort')
      assert.equal(reply.json().code, 'fault_injected')
      assert.equal(v1Seen.length, before)
    })

    it('header control: an injected delay proceeds, and the fault headers are not forwarded', async () => {
      const reply = await request(`${base}/faulty/delayed?id=delay`, { headers: { 'x-pillion-fault-delay': '20' } })
      assert.equal(reply.status, 200)
      assert.equal(reply.body.toString(), 'v1')
      assert.equal(reply.headers['x-pillion-fault'], 'delay')
      const seen = v1Seen.find((s) => s.url.includes('id=delay'))!
      assert.equal(seen.headers['x-pillion-fault-delay'], undefined)
    })

    it('an injected delay longer than the route timeout ends in 504', async () => {
      const reply = await request(`${base}/deadline/x`, { headers: { 'x-pillion-fault-delay': '600000' } })
      assert.equal(reply.status, 504)
      assert.equal(reply.json().code, 'upstream_timeout')
    })

    it('percent = 100 aborts every request with the configured status', async () => {
      for (let i = 0; i < 3; i++) {
        const reply = await request(`${base}/broken/x`)
        assert.equal(reply.status, 503)
        assert.equal(reply.headers['x-pillion-error'], 'fault_injected')
      }
    })

    it('a retry policy retries an injected abort like a real one', async () => {
      const before = v1Seen.length
      const reply = await request(`${base}/retried/x`, { headers: { 'x-pillion-fault-abort': '502' } })
      assert.equal(reply.status, 502)
      assert.equal(reply.headers['x-pillion-attempts'], '3')
      assert.equal(v1Seen.length, before)
    })
  })

  // The timeouts are only a net, so a regression that blocks fails instead of hanging the suite.
  describe(`mirror bound on ${target.name}`, { skip: target.missing, timeout: 120_000 }, () => {
    it('drops copies past max_in_flight; the clients never notice', async () => {
      const copies = new Arrivals<string>()
      const held: ServerResponse[] = []
      const hanging = await startUpstream((req, res) => {
        held.push(res)
        copies.add(req.url!)
      })
      const closed = deferred()
      let open = 0
      hanging.server.on('connection', (socket) => {
        open++
        socket.once('close', () => --open === 0 && closed.resolve())
      })
      const primary = await startUpstream((req, res) => res.end('primary'))
      const gateway = await startGateway(
        target,
        `${gatewaySection('mirror-bound')}
[upstreams.primary]
endpoints = ["${primary.url}"]

[upstreams.hanging]
endpoints = ["${hanging.url}"]

[[routes]]
name = "bounded"
listener = "ingress"
path = "/*"
upstream = "primary"
mirror = { upstream = "hanging", max_in_flight = 2, timeout = "1m" }
`,
      )
      try {
        const base = gateway.listeners.ingress!
        for (let n = 1; n <= 6; n++) {
          const reply = await request(`${base}/x?n=${n}`)
          assert.equal(reply.status, 200)
          assert.equal(reply.body.toString(), 'primary')
          if (n === 2) await copies.until(2)
        }
        await gateway.stop()
        // The gateway has exited, so its connections close: whatever it sent has been read by now.
        await closed.promise
        assert.deepEqual(copies.items, ['/x?n=1', '/x?n=2'], 'copies 3 to 6 were dropped, not sent')
      } finally {
        await gateway.stop()
        await Promise.all([hanging.close(), primary.close()])
      }
    })
  })

  describe(`audit trail on ${target.name}`, { skip: target.missing, timeout: 120_000 }, () => {
    let upstream: Upstream
    before(async () => {
      // Chunked, no content-length: the client has the whole answer only after the gateway has seen
      // its end, which is when the record is queued. So records queue in the order requests finish.
      upstream = await startUpstream((req, res) => {
        res.write('o')
        res.end('k')
      })
    })
    after(async () => {
      await upstream?.close()
    })

    /** A sink that answers each POST with the status `answer` gives (or holds it, for undefined). */
    async function startSink(answer: (post: number) => number | undefined) {
      const posts = new Arrivals<{ records: Array<Record<string, any>>; contentType: string | undefined }>()
      const held: ServerResponse[] = []
      const sink = await startUpstream(async (req, res) => {
        const records = JSON.parse((await readBody(req)).toString())
        const status = answer(posts.items.length + 1)
        posts.add({ records, contentType: req.headers['content-type'] })
        if (status === undefined) held.push(res)
        else res.writeHead(status).end()
      })
      return { sink, posts, held }
    }

    function auditPolicy(sink: Upstream, audit: string): string {
      return `${gatewaySection('audited')}
[upstreams.app]
endpoints = ["${upstream.url}"]

[[routes]]
name = "payments"
listener = "ingress"
path = "/payments/*"
upstream = "app"

[[routes]]
name = "health"
listener = "ingress"
path = "/health"
upstream = "app"

[audit]
sink = "${sink.url}/audit"
routes = ["payments"]
${audit}
`
    }

    it('sends batches of records with the chosen fields, retrying a failed POST', async () => {
      const { sink, posts } = await startSink((post) => (post === 1 ? 503 : 200))
      const gateway = await startGateway(target, auditPolicy(sink, 'batch = 3\nflush = "1m"\nheaders = ["x-tenant"]\nbackoff = { base = "10ms", max = "20ms" }'))
      try {
        const base = gateway.listeners.ingress!
        const ids: string[] = []
        for (let i = 0; i < 6; i++) {
          const reply = await request(`${base}/payments/charge?i=${i}`, { method: 'POST', body: 'x', headers: { 'x-tenant': 'acme' } })
          assert.equal(reply.status, 200)
          ids.push(String(reply.headers['x-request-id']))
          assert.equal((await request(`${base}/health`)).status, 200)
        }
        const [failed, retried, second] = await posts.until(3)
        assert.deepEqual(failed!.records, retried!.records, 'the batch the sink refused with 503 is sent again')
        assert.equal(retried!.contentType, 'application/json')
        assert.deepEqual(
          [...retried!.records, ...second!.records].map((record) => record.request_id),
          ids,
          'every payments request once, in order; /health is not audited',
        )
        const record = retried!.records[0]!
        assert.deepEqual(Object.keys(record).sort(), ['bytes_out', 'client', 'duration_ms', 'headers', 'method', 'path', 'request_id', 'route', 'service', 'status', 'time', 'upstream'])
        assert.equal(record.route, 'payments')
        assert.equal(record.method, 'POST')
        assert.equal(record.path, '/payments/charge')
        assert.equal(record.status, 200)
        assert.equal(record.service, 'audited')
        assert.equal(record.upstream, 'app')
        assert.equal(record.client, '127.0.0.1')
        assert.deepEqual(record.headers, { 'x-tenant': 'acme' })
        assert.ok(!Number.isNaN(Date.parse(record.time)))
      } finally {
        await gateway.stop()
        await sink.close()
      }
    })

    it('a hanging sink slows no request; overflow is dropped; SIGTERM flushes the rest before exit', async () => {
      const { sink, posts, held } = await startSink((post) => (post === 1 ? undefined : 200))
      const gateway = await startGateway(target, auditPolicy(sink, 'batch = 2\nmax_queue = 5\nflush = "1m"\ntimeout = "1m"'))
      const ids: string[] = []
      try {
        const base = gateway.listeners.ingress!
        const call = async () => {
          const reply = await request(`${base}/payments/x`)
          assert.equal(reply.status, 200)
          ids.push(String(reply.headers['x-request-id']))
        }
        await call()
        await call()
        await posts.until(1)
        // The sink holds the first batch: twelve more requests all complete regardless.
        for (let i = 0; i < 12; i++) await call()
        assert.equal(held.length, 1, 'the first POST is still unanswered')
        held[0]!.end()
        await posts.until(2)
        assert.equal(await gateway.stop(), 0)
        // flush is 1m: the third POST can only be the shutdown flush, sent before the process exited.
        const sent = posts.items.flatMap((post) => post.records.map((record) => record.request_id))
        assert.deepEqual(posts.items.map((post) => post.records.length), [2, 2, 1])
        assert.deepEqual(sent, ids.slice(0, 5), 'two in flight and three queued fitted max_queue = 5; the other nine were dropped')
      } finally {
        await gateway.stop()
        await sink.close()
      }
    })
  })
}
