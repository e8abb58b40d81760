// Client address and IP rules behind trusted proxies, rate limits keyed by that address and by a JWT
// claim, and request limits (size, method, URL, headers, slow bodies and slow headers).
import assert from 'node:assert/strict'
import { request as httpRequest } from 'node:http'
import { connect } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { SignJWT } from 'jose'
import { request, startGateway, startUpstream, targets, type Gateway, type Upstream } from './harness.ts'
import { rawHead, rawRequest } from './security-helpers.ts'

const SECRET = 'e2e-secret-that-is-at-least-32-bytes-long'

const sign = (sub: string) =>
  new SignJWT({ sub })
    .setProtectedHeader({ alg: 'HS256' })
    .setExpirationTime('5m')
    .sign(new TextEncoder().encode(SECRET))

function policy(upstream: Upstream) {
  return `
[gateway]
service = "limits"
admin = "127.0.0.1:0"
trusted_proxies = ["127.0.0.1"]
# Set, so Bun and Deno keep a header deadline too; the 1s client_timeout below makes it 1s.
header_timeout = "30s"

[listeners.in]
listen = "127.0.0.1:0"
direction = "ingress"

[listeners.v6]
listen = "[::1]:0"
direction = "ingress"

[upstreams.echo]
endpoints = ["${upstream.url}"]

[[routes]]
name = "office"
listener = "in"
path = "/office/*"
upstream = "echo"
ip = { allow = ["198.51.100.0/24"], deny = ["198.51.100.66"] }

[[routes]]
name = "quota"
listener = "in"
path = "/quota/*"
upstream = "echo"
rate_limit = [ { rate = "1/d", burst = 1, key = "client_ip" } ]

[[routes]]
name = "claims"
listener = "in"
path = "/claims/*"
upstream = "echo"
jwt = { secret_env = "PILLION_E2E_JWT_SECRET" }
rate_limit = [ { rate = "1/d", burst = 1, key = "jwt:sub" } ]

[[routes]]
name = "limited"
listener = "in"
path = "/limited/*"
upstream = "echo"

[routes.limits]
max_body = "1kb"
methods = ["GET", "POST"]
max_url_length = "200b"
max_header_bytes = "2kb"
client_timeout = "1s"

[[routes]]
name = "loopback-v6"
listener = "v6"
path = "/*"
upstream = "echo"
ip = { allow = ["::1"] }
`
}

for (const target of targets()) {
  describe(`client address, IP rules and limits on ${target.name}`, { skip: target.missing }, () => {
    let upstream: Upstream
    let gateway: Gateway
    let base: string
    let received = 0

    before(async () => {
      upstream = await startUpstream((req, res) => {
        req.on('data', (chunk: Buffer) => (received += chunk.length))
        req.on('end', () => res.end(JSON.stringify({ url: req.url, xff: req.headers['x-forwarded-for'] })))
        req.on('error', () => {})
      })
      gateway = await startGateway(target, policy(upstream), { PILLION_E2E_JWT_SECRET: SECRET })
      base = gateway.listeners.in!
    })

    after(async () => {
      const code = await gateway?.stop()
      await upstream?.close()
      assert.equal(code, 0, `gateway exit code; stderr:\n${gateway?.stderr.join('\n')}`)
    })

    const from = (xff?: string) => (xff === undefined ? {} : { headers: { 'x-forwarded-for': xff } })

    it('behind a trusted proxy, the rightmost untrusted X-Forwarded-For hop is the client', async () => {
      assert.equal((await request(`${base}/office/x`, from('198.51.100.7'))).status, 200)
      assert.equal((await request(`${base}/office/x`, from('6.6.6.6, 198.51.100.7'))).status, 200, 'the spoofed left entry is ignored')
      assert.equal((await request(`${base}/office/x`, from('198.51.100.7, 6.6.6.6'))).status, 403)
      assert.equal((await request(`${base}/office/x`, from('198.51.100.66'))).status, 403, 'deny wins')
      assert.equal((await request(`${base}/office/x`)).status, 403, 'no header: the proxy itself is the client')
    })

    it('the service gets the chain as received plus the proxy', async () => {
      const reply = await request(`${base}/office/x`, from('6.6.6.6, 198.51.100.7'))
      assert.equal(reply.json().xff, '6.6.6.6, 198.51.100.7, 127.0.0.1')
    })

    it('a rate limit keyed by client_ip counts the resolved client', async () => {
      assert.equal((await request(`${base}/quota/x`, from('198.51.100.1'))).status, 200)
      assert.equal((await request(`${base}/quota/x`, from('198.51.100.1'))).status, 429)
      assert.equal((await request(`${base}/quota/x`, from('198.51.100.2'))).status, 200, 'another client, another bucket')
    })

    it('a rate limit keyed by jwt:sub counts the verified subject (HS256 secret from the environment)', async () => {
      const alice = { authorization: `Bearer ${await sign('alice')}` }
      assert.equal((await request(`${base}/claims/x`, { headers: alice })).status, 200)
      assert.equal((await request(`${base}/claims/x`, { headers: alice })).status, 429)
      assert.equal((await request(`${base}/claims/x`, { headers: { authorization: `Bearer ${await sign('bob')}` } })).status, 200)
      assert.equal((await request(`${base}/claims/x`)).status, 401)
    })

    it('IPv6 clients match IPv6 rules', async () => {
      assert.match(gateway.listeners.v6!, /\[::1\]/)
      assert.equal((await request(`${gateway.listeners.v6}/x`)).status, 200)
    })

    it('405 with Allow for a method not listed, or named by a method override', async () => {
      const put = await request(`${base}/limited/x`, { method: 'PUT' })
      assert.equal(put.status, 405)
      assert.equal(put.json().code, 'method_not_allowed')
      assert.equal(put.headers.allow, 'GET, POST')
      assert.equal((await request(`${base}/limited/x`, { method: 'POST', headers: { 'x-http-method-override': 'DELETE' } })).status, 405)
    })

    it('414 for a long URL, 431 for large headers', async () => {
      const long = await request(`${base}/limited/${'a'.repeat(250)}`)
      assert.equal(long.status, 414)
      assert.equal(long.json().code, 'uri_too_long')
      const big = await request(`${base}/limited/x`, { headers: { 'x-big': 'b'.repeat(3000) } })
      assert.equal(big.status, 431)
      assert.equal(big.json().code, 'header_too_large')
    })

    it('413 on a Content-Length over max_body, before the service is called', async () => {
      const before = received
      const reply = await request(`${base}/limited/upload`, { method: 'POST', body: Buffer.alloc(2048, 1) })
      assert.equal(reply.status, 413)
      assert.equal(reply.json().code, 'body_too_large')
      assert.equal(received, before)
    })

    it('413 on a chunked body over max_body; the service never gets more than max_body', async () => {
      const before = received
      const status = await new Promise<number | string>((resolve) => {
        const req = httpRequest(`${base}/limited/upload`, { method: 'POST', agent: false, headers: { 'transfer-encoding': 'chunked' } }, (res) => {
          res.resume()
          resolve(res.statusCode!)
        })
        req.on('error', (error) => resolve(String(error)))
        for (let i = 0; i < 8; i++) req.write(Buffer.alloc(512, 2))
        req.end()
      })
      assert.equal(status, 413)
      assert.ok(received - before <= 1024, `the service got ${received - before} bytes`)
    })

    it('a body within max_body streams through whole', async () => {
      const reply = await request(`${base}/limited/upload`, { method: 'POST', body: Buffer.alloc(1024, 3) })
      assert.equal(reply.status, 200)
    })

    it('408 when the body stops arriving before client_timeout', async () => {
      const reply = await rawRequest(base, rawHead('POST /limited/slow HTTP/1.1', ['Host: localhost', 'Content-Length: 100']) + 'only ten b')
      assert.equal(reply.status, 408)
      assert.match(reply.text, /"code":"request_timeout"/)
    })

    /**
     * What a client gets back before the gateway closes the connection, when it sends `first`, and
     * `then` once something came back (a kept-alive connection), and nothing more.
     */
    const leftHanging = (first: string, then?: string) =>
      new Promise<string>((resolve) => {
        const socket = connect(Number(new URL(base).port), '127.0.0.1')
        let data = ''
        socket.on('data', (d) => {
          data += d
          if (then === undefined || !/\r\n\r\n\{.*\}$/.test(data)) return
          socket.write(then)
          then = undefined
        })
        socket.on('close', () => resolve(data))
        socket.on('error', () => resolve(data))
        socket.write(first)
      })

    it('a client whose headers never finish is cut off with 408 (the header deadline from client_timeout)', async () => {
      assert.match(await leftHanging('GET /limited/x HTTP/1.1\r\nHost: localhost\r\nX-Slow: '), /^HTTP\/1\.1 408/)
    })

    it('the deadline holds for a later request on a kept-alive connection too', async () => {
      const answers = await leftHanging('GET /limited/x HTTP/1.1\r\nHost: localhost\r\n\r\n', 'GET /limited/y HTTP/1.1\r\nX-Slow: ')
      assert.match(answers, /^HTTP\/1\.1 200[\s\S]*HTTP\/1\.1 408/)
    })
  })
}
