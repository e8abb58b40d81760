import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { loadConfigText } from '../../../src/config/load.ts'
import { EventBus, type GatewayEventMap } from '../../../src/core/events.ts'
import { AuditLog, type AuditEntry, type AuditTimers } from '../../../src/observability/audit.ts'
import type { RequestRecord } from '../../../src/observability/observer.ts'
import { Exchange } from '../../../src/proxy/exchange.ts'
import type { UpstreamRequest } from '../../../src/core/host.ts'
import { ONE_ROUTE, problemLines } from '../fakes/policy-text.ts'
import type { AuditConfig } from '../../../src/observability/audit.ts'

const loadAudit = (table: string) => loadConfigText(`${ONE_ROUTE}\n[audit]\n${table}\n`, 'x.toml').audit

describe('audit config', () => {
  it('defaults: batches of 100 every 1s, 10000 queued, every route, no headers', () => {
    assert.deepEqual(loadAudit('sink = "http://127.0.0.1:7000/audit"'), {
      sink: 'http://127.0.0.1:7000/audit',
      batch: 100,
      flushMs: 1000,
      maxQueue: 10_000,
      headers: [],
      timeoutMs: 5000,
      backoff: { baseMs: 100, maxMs: 60_000 },
    })
    assert.equal(loadConfigText(ONE_ROUTE, 'x.toml').audit, undefined)
  })

  it('the issue example, with headers lower-cased', () => {
    const text = `${ONE_ROUTE.replace('listener = "ingress"', 'name = "payments"\nlistener = "ingress"')}
[audit]
sink = "http://127.0.0.1:7000/audit"
batch = 100
flush = "1s"
max_queue = 10000
routes = ["payments"]
headers = ["X-Tenant"]
`
    const audit = loadConfigText(text, 'x.toml').audit!
    assert.deepEqual(audit.routes, ['payments'])
    assert.deepEqual(audit.headers, ['x-tenant'])
    assert.equal(loadAudit('sink = "https://audit.example/in?k=1"\nroutes = "all"')!.routes, undefined)
  })

  it('refuses unknown routes, credentials, a batch over the queue, and a bad sink', () => {
    assert.deepEqual(problemLines(`${ONE_ROUTE}\n[audit]\nsink = "http://127.0.0.1:7000/"\nroutes = ["payments"]\n`), [
      'audit.routes[0]: no route named "payments" (defined: route-0)',
    ])
    assert.deepEqual(problemLines(`${ONE_ROUTE}\n[audit]\nsink = "tcp://x:1"\nheaders = ["Authorization"]\nbatch = 50\nmax_queue = 10\n`), [
      'audit.sink: expected an http:// or https:// URL like "http://127.0.0.1:7000/audit", got "tcp://x:1"',
      'audit.headers[0]: "Authorization" carries credentials; it is never copied into audit records',
      'audit.batch: expected at most max_queue (10), got 50',
    ])
    assert.deepEqual(problemLines(`${ONE_ROUTE}\n[audit]\nsink = "http://127.0.0.1:7000/"\nbatch = 50\nmax_queue = 10\n`), [
      'audit.batch: expected at most max_queue (10), got 50',
    ])
    assert.deepEqual(problemLines(`${ONE_ROUTE}\n[audit]\nsink = "http://127.0.0.1:7000/"\nevery = "1s"\n`)[0]!.split(' (allowed')[0], 'audit.every: unknown key "every"')
  })
})

/** Timers the test fires itself: nothing in these tests waits on the clock. */
class ManualTimers implements AuditTimers {
  pending = new Map<number, { callback: () => void; ms: number }>()
  #next = 0
  #waiting: Array<{ accepts: (ms: number) => boolean; resolve: (ms: number) => void }> = []
  set(callback: () => void, ms: number): unknown {
    const id = ++this.#next
    this.pending.set(id, { callback, ms })
    const waiter = this.#waiting.find((w) => w.accepts(ms))
    if (waiter !== undefined) {
      this.#waiting.splice(this.#waiting.indexOf(waiter), 1)
      waiter.resolve(ms)
    }
    return id
  }
  /** Resolves with the length of the next timer set that `accepts` takes. */
  next(accepts: (ms: number) => boolean): Promise<number> {
    return new Promise((resolve) => this.#waiting.push({ accepts, resolve }))
  }
  clear(handle: unknown): void {
    this.pending.delete(handle as number)
  }
  /** Fires every pending timer of this length; returns how many. */
  fire(ms: number): number {
    let fired = 0
    for (const [id, timer] of [...this.pending]) {
      if (timer.ms !== ms) continue
      this.pending.delete(id)
      timer.callback()
      fired++
    }
    return fired
  }
  has(ms: number): boolean {
    return [...this.pending.values()].some((timer) => timer.ms === ms)
  }
}

/** The sink: each POST waits for the test's answer. */
interface Post {
  request: UpstreamRequest
  entries: AuditEntry[]
  answer(status: number | Error): void
}

const CONFIG: AuditConfig = {
  sink: 'http://127.0.0.1:7000/audit',
  batch: 3,
  flushMs: 1000,
  maxQueue: 5,
  headers: ['x-tenant'],
  timeoutMs: 5000,
  backoff: { baseMs: 100, maxMs: 400 },
}

function harness(config: Partial<AuditConfig> = {}) {
  const timers = new ManualTimers()
  const events = new EventBus()
  const seen: string[] = []
  for (const name of ['audit_sent', 'audit_failed', 'audit_dropped'] as const) {
    events.on(name, (event: GatewayEventMap[typeof name]) => seen.push(`${name} ${JSON.stringify(event)}`))
  }
  const posts: Post[] = []
  const waiting: Array<(post: Post) => void> = []
  const send = (request: UpstreamRequest) =>
    new Promise<Response>((resolve, reject) => {
      request.signal.addEventListener('abort', () => reject(request.signal.reason), { once: true })
      const post: Post = {
        request,
        entries: JSON.parse(new TextDecoder().decode(request.body as Uint8Array)),
        answer: (status) => (status instanceof Error ? reject(status) : resolve(new Response(status === 204 ? null : '{}', { status }))),
      }
      posts.push(post)
      waiting.shift()?.(post)
    })
  const log = new AuditLog({ ...CONFIG, ...config }, { send, events, service: 'orders', timers, random: () => 1 })
  let n = 0
  return {
    log,
    /** Resolves with the next event of that name. */
    nextEvent: <K extends 'audit_sent' | 'audit_failed' | 'audit_dropped'>(name: K) =>
      new Promise<GatewayEventMap[K]>((resolve) => {
        const off = events.on(name, (event) => {
          off()
          resolve(event)
        })
      }),
    timers,
    seen,
    posts,
    nextPost: () => new Promise<Post>((resolve) => waiting.push(resolve)),
    /** One finished request on `route`. */
    request(route = 'payments', headers: Record<string, string> = {}) {
      const id = `req-${++n}`
      const exchange = new Exchange(new Request('http://gateway/pay', { headers }), { remoteAddress: '10.0.0.7' }, id, '/pay', '', 0)
      exchange.route = route
      exchange.upstream = 'payments-v2'
      // Asserted rather than annotated: RequestRecord is growing fields (request) this test does not need.
      const record = {
        requestId: id,
        route,
        method: 'POST',
        path: '/pay',
        status: 201,
        code: undefined,
        startedAt: Date.UTC(2030, 0, 2, 3, 4, 5, 678),
        durationMs: 12.3456789,
        bytesOut: 42,
        clientAddress: '10.0.0.7',
        exchange,
        request: exchange.request,
      } as RequestRecord
      log.onResponse(record)
      return id
    },
  }
}

/** A backoff: a timer that is neither the flush (1000), a POST's timeout (5000) nor close's deadline. */
const isBackoff = (ms: number) => ms !== 1000 && ms !== 5000 && ms < 2000
describe('audit log', () => {
  it('sends a full batch at once, as a JSON array of records with the chosen fields', async () => {
    const audit = harness()
    const arrived = audit.nextPost()
    audit.request('payments', { 'x-tenant': 'acme', 'x-other': 'no' })
    audit.request()
    assert.equal(audit.posts.length, 0, 'two of three: waiting for the batch or the flush')
    audit.request()
    const post = await arrived
    assert.equal(post.request.method, 'POST')
    assert.equal(post.request.url, 'http://127.0.0.1:7000/audit')
    assert.equal(post.request.headers.get('content-type'), 'application/json')
    assert.equal(post.entries.length, 3)
    assert.deepEqual(post.entries[0], {
      time: '2030-01-02T03:04:05.678Z',
      service: 'orders',
      request_id: 'req-1',
      route: 'payments',
      method: 'POST',
      path: '/pay',
      status: 201,
      upstream: 'payments-v2',
      client: '10.0.0.7',
      duration_ms: 12.346,
      bytes_out: 42,
      headers: { 'x-tenant': 'acme' },
    })
    assert.deepEqual(post.entries[1]!.headers, {})
    const sent = audit.nextEvent('audit_sent')
    post.answer(204)
    assert.deepEqual(await sent, { records: 3 })
  })

  it('sends a partial batch when the flush interval comes', async () => {
    const audit = harness()
    audit.request()
    const arrived = audit.nextPost()
    assert.equal(audit.timers.fire(1000), 1)
    assert.equal((await arrived).entries.length, 1)
  })

  it('audits only the listed routes, and never requests that matched no route', async () => {
    const audit = harness({ routes: ['payments'] })
    audit.request('orders')
    const unrouted = { requestId: 'x', route: undefined, method: 'GET', path: '/', status: 404, code: 'no_route', startedAt: 0, durationMs: 0, bytesOut: 0, clientAddress: '', exchange: undefined, request: new Request('http://gateway/') }
    audit.log.onResponse(unrouted as RequestRecord)
    assert.equal(audit.log.size, 0)
    assert.equal(audit.timers.has(1000), false)
    audit.request('payments')
    assert.equal(audit.log.size, 1)
  })

  it('a sink that hangs holds one batch; the queue fills to max_queue and the rest is dropped and counted', async () => {
    const audit = harness()
    const first = audit.nextPost()
    for (let i = 0; i < 3; i++) audit.request()
    const held = await first
    for (let i = 0; i < 10; i++) audit.request()
    assert.equal(audit.log.size, 5, 'three in flight, two queued')
    assert.equal(audit.seen.filter((line) => line.startsWith('audit_dropped {"reason":"queue_full"')).length, 8)
    const second = audit.nextPost()
    const flushSet = audit.timers.next((ms) => ms === 1000)
    held.answer(200)
    await flushSet
    assert.equal(audit.timers.fire(1000), 1, 'less than a batch left: it goes at the next flush')
    assert.deepEqual((await second).entries.map((entry) => entry.request_id), ['req-4', 'req-5'], 'the two that fitted, in order')
  })

  it('retries a failed batch with exponential backoff, then sends it once it is accepted', async () => {
    const audit = harness()
    for (let i = 0; i < 3; i++) audit.request()
    const delays: number[] = []
    for (let attempt = 1; attempt <= 4; attempt++) {
      const post = audit.posts.at(-1)!
      const backoff = audit.timers.next(isBackoff)
      post.answer(attempt % 2 === 0 ? new Error('connection refused') : 503)
      const wait = await backoff
      delays.push(wait)
      const next = audit.nextPost()
      assert.equal(audit.timers.fire(wait), 1)
      await next
    }
    assert.deepEqual(delays, [100, 200, 400, 400], 'random() = 1: the top of each equal-jitter range, capped at max')
    const sent = audit.nextEvent('audit_sent')
    audit.posts.at(-1)!.answer(200)
    await sent
    assert.equal(audit.posts.length, 5)
    assert.ok(audit.posts.every((post) => post.entries.map((entry) => entry.request_id).join() === 'req-1,req-2,req-3'))
    assert.deepEqual(audit.seen.at(-1), 'audit_sent {"records":3}')
    assert.deepEqual(
      audit.seen.slice(0, 4).map((line) => JSON.parse(line.slice(line.indexOf('{'))).attempt),
      [1, 2, 3, 4],
    )
  })

  it('a sink that times out is retried', async () => {
    const audit = harness()
    for (let i = 0; i < 3; i++) audit.request()
    const failed = audit.nextEvent('audit_failed')
    assert.equal(audit.timers.fire(5000), 1)
    assert.equal((await failed).records, 3)
    assert.equal(audit.posts[0]!.request.signal.aborted, true)
  })

  it('drops a batch the sink refuses (4xx other than 408 and 429)', async () => {
    const audit = harness()
    for (let i = 0; i < 3; i++) audit.request()
    const dropped = audit.nextEvent('audit_dropped')
    audit.posts[0]!.answer(400)
    assert.deepEqual(await dropped, { reason: 'rejected', records: 3 })
    assert.deepEqual(audit.seen, ['audit_dropped {"reason":"rejected","records":3}'])
    assert.equal(audit.log.size, 0)
  })

  it('close sends everything left at once, partial batches too', async () => {
    const audit = harness({ maxQueue: 100 })
    for (let i = 0; i < 7; i++) audit.request()
    const closed = audit.log.close(10_000)
    for (let post = 1; post <= 3; post++) {
      const next = post < 3 ? audit.nextPost() : undefined
      audit.posts.at(-1)!.answer(200)
      await next
    }
    await closed
    assert.deepEqual(
      audit.posts.map((post) => post.entries.length),
      [3, 3, 1],
    )
    assert.equal(audit.log.size, 0)
    audit.request()
    assert.equal(audit.seen.at(-1), 'audit_dropped {"reason":"shutdown","records":1}', 'closed: later records are dropped')
  })

  it('close retries at once instead of sitting out a backoff, and gives up at its deadline', async () => {
    const audit = harness()
    for (let i = 0; i < 4; i++) audit.request()
    const backoff = audit.timers.next(isBackoff)
    audit.posts[0]!.answer(503)
    await backoff
    assert.equal(audit.posts.length, 1, 'backing off')
    const retried = audit.nextPost()
    const closed = audit.log.close(2000)
    await retried
    audit.timers.fire(2000)
    await closed
    assert.equal(audit.posts[1]!.request.signal.aborted, true, 'the POST in flight is cut at the deadline')
    assert.equal(audit.seen.at(-1), 'audit_dropped {"reason":"shutdown","records":4}')
  })

  it('close with no time left drops what it holds', async () => {
    const audit = harness()
    audit.request()
    await audit.log.close(0)
    assert.equal(audit.posts.length, 0)
    assert.equal(audit.seen.at(-1), 'audit_dropped {"reason":"shutdown","records":1}')
  })
})
