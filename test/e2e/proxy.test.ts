import assert from 'node:assert/strict'
import { request as httpRequest } from 'node:http'
import { connect } from 'node:net'
import { after, before, describe, it } from 'node:test'
import {
  answerWithDigest,
  closedPort,
  deferred,
  rawHeaderValues,
  readBody,
  request,
  startGateway,
  startUpstream,
  targets,
  type Gateway,
  type Upstream,
} from './harness.ts'

/** Requests the upstream is holding open, by the test's own key, to await arrivals and disconnects. */
const held = new Map<string, { arrived: () => void; closed: () => void }>()
const holdEvents = (key: string) => {
  const arrived = deferred()
  const closed = deferred()
  held.set(key, { arrived: () => arrived.resolve(), closed: () => closed.resolve() })
  return { arrived: arrived.promise, closed: closed.promise }
}

async function behaviour(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) {
  const url = new URL(req.url!, 'http://upstream')
  switch (url.pathname.replace(/^\/(api|pay)/, '')) {
    case '/cookies':
      res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; Path=/'])
      return res.end('cookies')
    case '/hop':
      res.writeHead(200, { connection: 'x-private', 'x-private': 'secret', 'keep-alive': 'timeout=5', 'x-public': 'yes' })
      return res.end('hop')
    case '/stall': {
      const events = held.get('stall')!
      req.socket.once('close', events.closed)
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.write('partial')
      events.arrived()
      return // the rest of the body never comes
    }
    case '/redirect':
      res.writeHead(302, { location: '/elsewhere' })
      return res.end()
    case '/status':
      res.writeHead(Number(url.searchParams.get('code')))
      return res.end()
    case '/hold': {
      const key = url.searchParams.get('key')!
      const events = held.get(key)!
      req.socket.once('close', events.closed)
      events.arrived()
      if (url.searchParams.get('release') === 'stdout') return // released by the test writing later
      return
    }
    case '/download': {
      let remaining = Number(url.searchParams.get('bytes'))
      const chunk = Buffer.alloc(64 * 1024, 7)
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      const pump = () => {
        while (remaining > 0) {
          const piece = remaining >= chunk.length ? chunk : chunk.subarray(0, remaining)
          remaining -= piece.length
          if (!res.write(piece)) return void res.once('drain', pump)
        }
        res.end()
      }
      return pump()
    }
    case '/upload':
      return answerWithDigest(req, res)
    default: {
      const body = await readBody(req)
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ method: req.method, url: req.url, rawHeaders: req.rawHeaders, body: body.toString() }))
    }
  }
}

function policy(upstream: Upstream, second: Upstream, refusedPort: number): string {
  return `
[gateway]
service = "orders"
admin = "127.0.0.1:0"
shutdown_grace = "5s"

[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"

[listeners.egress]
listen = "127.0.0.1:0"
direction = "egress"

[upstreams.local]
endpoints = ["${upstream.url}"]

[upstreams.pair]
endpoints = ["${upstream.url}", "${second.url}"]

[upstreams.refused]
endpoints = ["http://127.0.0.1:${refusedPort}"]

[[routes]]
name = "slow"
listener = "ingress"
path = "/api/hold"
upstream = "local"
timeout = "300ms"

[[routes]]
name = "stall"
listener = "ingress"
path = "/api/stall"
upstream = "local"
timeout = "300ms"

[[routes]]
name = "held"
listener = "ingress"
path = "/held/*"
upstream = "local"
strip_prefix = "/held"

[[routes]]
name = "refused"
listener = "ingress"
path = "/refused/*"
upstream = "refused"

[[routes]]
name = "users"
listener = "ingress"
path = "/users/:id/orders"
methods = ["GET"]
upstream = "local"

[[routes]]
name = "api"
listener = "ingress"
path = "/api/*"
upstream = "local"

[[routes]]
name = "payments-v2"
listener = "egress"
host = "payments"
path = "/pay/*"
headers = { "x-version" = "v2" }
upstream = "pair"
strip_prefix = "/pay"

[[routes]]
name = "payments"
listener = "egress"
host = "payments"
path = "/pay/*"
upstream = "local"
strip_prefix = "/pay"

[[routes]]
name = "versioned"
listener = "ingress"
path = "/v1/*"
strip_prefix = "/v1"
rewrite = { regex = "^/users/([0-9]+)$", replacement = "/u/$1", prefix = "/v2" }
upstream = "local"

[[routes]]
name = "cluster-services"
listener = "egress"
host = "*.svc.internal"
path = "/*"
upstream = "local"
`
}

for (const target of targets()) {
  describe(`proxy on ${target.name}`, { skip: target.missing }, () => {
    let upstream: Upstream
    let second: Upstream
    let gateway: Gateway
    let ingress: string
    let egress: string

    before(async () => {
      upstream = await startUpstream((req, res) => void behaviour(req, res))
      second = await startUpstream((req, res) => res.end(JSON.stringify({ second: true, url: req.url })))
      gateway = await startGateway(target, policy(upstream, second, await closedPort()))
      ingress = gateway.listeners.ingress!
      egress = gateway.listeners.egress!
    })

    after(async () => {
      const code = await gateway?.stop()
      await upstream?.close()
      await second?.close()
      assert.equal(code, 0, `gateway exit code; stderr:\n${gateway?.stderr.join('\n')}`)
    })

    it('preserves method, path, query string and body exactly', async () => {
      const reply = await request(`${ingress}/api/items/%20x?b=2&a=1&a=3`, {
        method: 'POST',
        headers: { 'content-type': 'text/plain' },
        body: 'hello body',
      })
      assert.equal(reply.status, 200)
      const seen = reply.json()
      assert.equal(seen.method, 'POST')
      assert.equal(seen.url, '/api/items/%20x?b=2&a=1&a=3')
      assert.equal(seen.body, 'hello body')
    })

    it('passes status codes and repeated set-cookie headers through', async () => {
      const cookies = await request(`${ingress}/api/cookies`)
      assert.deepEqual(rawHeaderValues(cookies.rawHeaders, 'set-cookie'), ['a=1; Path=/', 'b=2; Path=/'])
      for (const code of [201, 404, 418, 503]) {
        const reply = await request(`${ingress}/api/status?code=${code}`)
        assert.equal(reply.status, code)
        assert.equal(reply.headers['x-pillion-error'], undefined)
      }
    })

    it('strips hop-by-hop headers in both directions', async () => {
      const reply = await request(`${ingress}/api/echo`, {
        headers: {
          connection: 'keep-alive, x-hop',
          'x-hop': 'must-not-pass',
          'keep-alive': 'timeout=5',
          te: 'trailers',
          'proxy-authorization': 'Basic c2VjcmV0',
          'proxy-connection': 'keep-alive',
          'x-end-to-end': 'kept',
        },
      })
      const names = (reply.json().rawHeaders as string[]).filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase())
      for (const hop of ['x-hop', 'keep-alive', 'te', 'proxy-authorization', 'proxy-connection', 'upgrade', 'trailer']) {
        assert.ok(!names.includes(hop), `${hop} reached the upstream`)
      }
      assert.ok(names.includes('x-end-to-end'))
      const back = await request(`${ingress}/api/hop`)
      assert.equal(back.headers['x-private'], undefined)
      assert.equal(back.headers['keep-alive'], undefined)
      assert.equal(back.headers['x-public'], 'yes')
    })

    it('adds forwarding headers and a request id, and returns the id', async () => {
      const reply = await request(`${ingress}/api/echo`, { headers: { 'x-forwarded-for': '203.0.113.9', host: 'shop.example:8443' } })
      const upstreamSaw = new Map<string, string>()
      const raw = reply.json().rawHeaders as string[]
      for (let i = 0; i < raw.length; i += 2) upstreamSaw.set(raw[i]!.toLowerCase(), raw[i + 1]!)
      assert.equal(upstreamSaw.get('x-forwarded-for'), '203.0.113.9, 127.0.0.1')
      assert.equal(upstreamSaw.get('x-forwarded-proto'), 'http')
      assert.equal(upstreamSaw.get('x-forwarded-host'), 'shop.example:8443')
      assert.match(upstreamSaw.get('via')!, /pillion/)
      assert.equal(upstreamSaw.get('host'), `127.0.0.1:${upstream.port}`)
      const id = upstreamSaw.get('x-request-id')!
      assert.match(id, /^[\w-]{16,}$/)
      assert.equal(reply.headers['x-request-id'], id)
      const given = await request(`${ingress}/api/echo`, { headers: { 'x-request-id': 'abc-123' } })
      assert.equal(given.headers['x-request-id'], 'abc-123')
    })

    it('matches routes by host, header, method and path parameters, first match wins', async () => {
      const v2 = await request(`${egress}/pay/charge`, { headers: { host: 'payments:15001', 'x-version': 'v2' } })
      const v1 = await request(`${egress}/pay/charge`, { headers: { host: 'payments' } })
      assert.ok(v2.json().second || v2.json().url === '/charge', 'v2 goes to the pair upstream')
      assert.equal(v1.json().url, '/charge', 'strip_prefix applied')
      const wildcard = await request(`${egress}/pay/charge`, { headers: { host: 'Ledger.SVC.internal:8080' } })
      assert.equal(wildcard.json().url, '/pay/charge', '*.svc.internal matched, payments did not')
      assert.equal((await request(`${egress}/x`, { headers: { host: 'svc.internal' } })).status, 404, 'the wildcard needs a label before it')
      const wrongHost = await request(`${egress}/pay/charge`, { headers: { host: 'evil.example' } })
      assert.equal(wrongHost.status, 404)
      assert.equal(wrongHost.json().code, 'no_route')
      assert.equal((await request(`${ingress}/users/42/orders`)).status, 200)
      assert.equal((await request(`${ingress}/users/42/orders`, { method: 'DELETE' })).status, 404)
      assert.equal((await request(`${ingress}/users/42/orders/9`)).status, 404)
    })

    it('serves an app that uses the egress listener as its HTTP_PROXY: absolute-form targets route by host', async () => {
      // What curl, Python's requests or Node's undici send with HTTP_PROXY set: the whole URL as the target.
      const reply = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const outgoing = httpRequest({ host: '127.0.0.1', port: Number(new URL(egress).port), path: 'http://payments/pay/charge', headers: { host: 'payments' } }, (res) => {
          let body = ''
          res.setEncoding('utf8')
          res.on('data', (chunk) => (body += chunk))
          res.on('end', () => resolve({ status: res.statusCode!, body }))
        })
        outgoing.on('error', reject)
        outgoing.end()
      })
      assert.equal(reply.status, 200)
      assert.equal(JSON.parse(reply.body).url, '/charge', 'the payments route took it, strip_prefix applied')
    })

    it('refuses CONNECT with 405 method_not_allowed and Allow, never forwarding it', async () => {
      const before = upstream.connections
      const raw = await new Promise<string>((resolve) => {
        const socket = connect(Number(new URL(egress).port), '127.0.0.1')
        let data = ''
        socket.setEncoding('utf8')
        socket.on('data', (chunk) => (data += chunk))
        socket.on('close', () => resolve(data))
        socket.on('error', () => resolve(data))
        socket.write('CONNECT payments:443 HTTP/1.1\r\nHost: payments:443\r\nx-request-id: tunnel-1\r\n\r\n')
        // The answer ends with the JSON body; the gateway may keep the socket open afterwards.
        socket.on('data', () => data.includes('"request_id"') && data.trimEnd().endsWith('}') && socket.destroy())
      })
      const [head, body] = raw.split('\r\n\r\n')
      assert.match(head!, /^HTTP\/1\.1 405 /)
      assert.match(head!, /\r\nallow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS/i)
      assert.deepEqual(JSON.parse(body!), { code: 'method_not_allowed', message: JSON.parse(body!).message, request_id: 'tunnel-1' })
      assert.equal(upstream.connections, before, 'nothing reached the upstream')
    })

    it('rewrites the path after strip_prefix: a regular expression, then a prefix', async () => {
      assert.equal((await request(`${ingress}/v1/users/42?x=1`)).json().url, '/v2/u/42?x=1')
      assert.equal((await request(`${ingress}/v1/orders`)).json().url, '/v2/orders')
    })

    it('balances round robin across endpoints', async () => {
      const seen = []
      for (let i = 0; i < 4; i++) {
        const reply = await request(`${egress}/pay/x`, { headers: { host: 'payments', 'x-version': 'v2' } })
        seen.push(reply.json().second === true)
      }
      assert.deepEqual(seen.sort(), [false, false, true, true])
    })

    it('answers JSON errors with a stable code and the request id', async () => {
      const none = await request(`${ingress}/nowhere`)
      assert.equal(none.status, 404)
      const body = none.json()
      assert.equal(body.code, 'no_route')
      assert.equal(body.request_id, none.headers['x-request-id'])
      const refused = await request(`${ingress}/refused/x`)
      assert.equal(refused.status, 502)
      assert.equal(refused.json().code, 'upstream_unavailable')
      assert.ok(!refused.body.toString().includes('at '), 'no stack trace')
    })

    it('times out a slow upstream with 504 and closes the upstream connection', async () => {
      const events = holdEvents('timeout')
      const reply = await request(`${ingress}/api/hold?key=timeout`)
      assert.equal(reply.status, 504)
      assert.equal(reply.json().code, 'upstream_timeout')
      await events.arrived
      await events.closed
    })

    it('cuts a response whose body stalls at the route timeout, and closes the upstream call', async () => {
      const events = holdEvents('stall')
      // Headers were due in time, so the status cannot change any more; the client must see the body cut.
      // Bun may not have flushed the headers yet when the cut comes: then the connection is reset.
      const outcome = await new Promise<{ status?: number; complete: boolean; error?: string }>((resolve) => {
        httpRequest(`${ingress}/api/stall`, { agent: false }, (res) => {
          res.on('data', () => {})
          res.on('error', () => {})
          res.on('close', () => resolve({ status: res.statusCode!, complete: res.complete }))
        })
          .on('error', (error) => resolve({ complete: false, error: String(error) }))
          .end()
      })
      assert.equal(outcome.complete, false, 'the body was cut, not ended')
      if (outcome.error === undefined) assert.equal(outcome.status, 200)
      else assert.match(outcome.error, /ECONNRESET|socket hang up/)
      await events.arrived
      // The upstream connection goes with the cut on every target (Deno's fetch sometimes kept it; its own client does not).
      await events.closed
    })

    it('cancels the upstream call when the client goes away, and logs 499', async () => {
      const events = holdEvents('gone')
      const req = httpRequest(`${ingress}/held/api/hold?key=gone`, { agent: false })
      req.on('error', () => {})
      req.end()
      await events.arrived
      req.destroy()
      await events.closed
      await gateway.waitForLine(/"code":"client_closed"/, 'stderr')
    })

    it('passes redirects to the client instead of following them', async () => {
      const reply = await request(`${ingress}/api/redirect`)
      assert.equal(reply.status, 302)
      assert.equal(reply.headers.location, '/elsewhere')
    })

    it('handles Expect: 100-continue uploads', async () => {
      const body = Buffer.alloc(256 * 1024, 1)
      const reply = await new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = httpRequest(`${ingress}/api/upload`, {
          method: 'PUT',
          agent: false,
          headers: { expect: '100-continue', 'content-length': body.length },
        })
        req.on('continue', () => req.end(body))
        req.on('response', async (res) => resolve({ status: res.statusCode!, text: (await readBody(res)).toString() }))
        req.on('error', reject)
      })
      assert.equal(reply.status, 200)
      assert.equal(JSON.parse(reply.text).bytes, body.length)
    })

    it('reuses upstream connections', async () => {
      const before = upstream.connections
      for (let i = 0; i < 20; i++) assert.equal((await request(`${ingress}/api/echo`)).status, 200)
      assert.ok(upstream.connections - before <= 2, `opened ${upstream.connections - before} connections for 20 requests`)
    })

    it('survives malformed requests and keeps serving', async () => {
      const raw = await new Promise<string>((resolve) => {
        const socket = connect(Number(new URL(ingress).port), '127.0.0.1')
        let data = ''
        socket.on('data', (d) => (data += d))
        socket.on('close', () => resolve(data))
        socket.on('error', () => resolve(data))
        socket.end('GET /api/echo HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n')
      })
      assert.ok(!raw.includes('    at '), 'no stack trace')
      assert.equal((await request(`${ingress}/api/echo`)).status, 200)
    })

    it('serves health, readiness and the effective config on the admin listener', async () => {
      assert.equal((await request(`${gateway.admin}/healthz`)).status, 200)
      assert.equal((await request(`${gateway.admin}/readyz`)).status, 200)
      const config = (await request(`${gateway.admin}/config`)).json()
      assert.equal(config.gateway.service, 'orders')
      assert.equal(config.routes[0].policies.timeoutMs, 300)
    })
  })
}
