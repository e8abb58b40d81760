// gRPC through Pillion with a real client and server from @grpc/grpc-js: the four kinds of call,
// metadata and trailers (grpc-status-details-bin) intact, h2c with HTTP/1.1 on the same port, h2 over
// TLS by ALPN to an h2 upstream, and the gateway's own errors answered the gRPC way.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { get as httpsGet } from 'node:https'
import { connect, constants, type IncomingHttpHeaders } from 'node:http2'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import * as grpc from '@grpc/grpc-js'
import { closedPort, request, startGateway, startUpstream, targets, until, type Gateway, type Upstream } from './harness.ts'
import { makeCertificates, type TestCertificates } from './security-helpers.ts'
import { DETAILS, EchoClient, seen, startEchoServer } from './grpc-service.ts'

const BIG = 8 * 1024 * 1024
const LARGE_MESSAGES = { 'grpc.max_receive_message_length': 64 * 1024 * 1024, 'grpc.max_send_message_length': 64 * 1024 * 1024 }

function policy(certs: TestCertificates, echo: number, echoTls: number, down: number, web: string): string {
  return `
[gateway]
service = "grpc-e2e"
admin = "127.0.0.1:0"

[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"
protocols = ["http1", "h2c"]

[listeners.secure]
listen = "127.0.0.1:0"
direction = "ingress"
tls = { cert = "${certs.serverCert}", key = "${certs.serverKey}" }
protocols = ["http1", "h2"]

[upstreams.echo]
endpoints = ["http://127.0.0.1:${echo}"]
protocol = "h2c"

[upstreams.echo_tls]
endpoints = ["https://127.0.0.1:${echoTls}"]
protocol = "h2"
ca = "${certs.caCert}"

[upstreams.down]
endpoints = ["http://127.0.0.1:${down}"]
protocol = "h2c"

[upstreams.web]
endpoints = ["${web}"]

[[routes]]
listener = "ingress"
path = "/pillion.test.Echo/*"
headers = { "x-route" = "limited" }
upstream = "echo"
rate_limit = [ { rate = "1/m", burst = 1, key = "client_ip" } ]

[[routes]]
listener = "ingress"
path = "/pillion.test.Echo/*"
headers = { "x-route" = "guarded" }
upstream = "echo"
api_key = { header = "x-api-key", keys_file = "keys.json" }

[[routes]]
listener = "ingress"
path = "/pillion.test.Echo/*"
headers = { "x-route" = "down" }
upstream = "down"

[[routes]]
listener = "ingress"
path = "/pillion.test.Echo/*"
headers = { "x-route" = "deaf" }
upstream = "web"

[[routes]]
listener = "ingress"
path = "/pillion.test.Echo/*"
headers = { "x-route" = "retried" }
upstream = "echo"
retry = { attempts = 3, on = ["unavailable"], methods = ["POST"], backoff = { base = "1ms" } }

[[routes]]
listener = "ingress"
path = "/pillion.test.Echo/*"
headers = { "x-route" = "breaker" }
upstream = "echo"
circuit_breaker = { window_requests = 4, min_requests = 4, failure_rate = 0.5, open_for = "1m", failures = ["unavailable"] }

[[routes]]
listener = "ingress"
path = "/pillion.test.Echo/*"
upstream = "echo"
timeout = "20s"

[[routes]]
listener = "secure"
path = "/pillion.test.Echo/*"
upstream = "echo_tls"

[[routes]]
listener = "ingress"
path = "/web/*"
upstream = "web"

[[routes]]
listener = "secure"
path = "/web/*"
upstream = "web"
`
}

type Client = InstanceType<typeof EchoClient> & Record<string, (...args: unknown[]) => grpc.ClientUnaryCall & grpc.ClientReadableStream<string> & grpc.ClientWritableStream<string>>

interface Outcome {
  value?: string
  code: number
  details: string
  trailers: grpc.Metadata
}

function metadata(fields: Record<string, string>): grpc.Metadata {
  const meta = new grpc.Metadata()
  for (const [name, value] of Object.entries(fields)) meta.set(name, value)
  return meta
}

/** A unary call's value or error, and the trailers it ended with. */
function say(client: Client, message: string, meta = new grpc.Metadata(), options: grpc.CallOptions = {}): Promise<Outcome> {
  return new Promise((resolve) => {
    let result: { value?: string; error?: grpc.ServiceError } = {}
    const call = client.say(message, meta, options, (error: grpc.ServiceError | null, value: string) => {
      result = error === null ? { value } : { error }
    })
    call.on('status', (status: grpc.StatusObject) =>
      setImmediate(() => resolve({ ...(result.value === undefined ? {} : { value: result.value }), code: status.code, details: status.details, trailers: status.metadata })),
    )
  })
}

for (const target of targets()) {
  describe(`gRPC on ${target.name}`, { skip: target.missing }, () => {
    let gateway: Gateway
    let echo: Awaited<ReturnType<typeof startEchoServer>>
    let echoTls: Awaited<ReturnType<typeof startEchoServer>>
    let web: Upstream
    let certs: TestCertificates
    let client: Client
    const clients: grpc.Client[] = []
    const clientOf = (address: string, credentials = grpc.credentials.createInsecure(), options: grpc.ClientOptions = {}) => {
      const made = new EchoClient(address, credentials, { ...LARGE_MESSAGES, ...options }) as Client
      clients.push(made)
      return made
    }

    before(async () => {
      certs = makeCertificates()
      echo = await startEchoServer()
      const pem = (file: string) => readFileSync(file)
      echoTls = await startEchoServer(grpc.ServerCredentials.createSsl(null, [{ cert_chain: pem(certs.serverCert), private_key: pem(certs.serverKey) }]))
      // A gRPC call routed here never gets an answer (nor sees grpc-timeout): only the gateway can end it.
      web = await startUpstream((req, res) => (req.url?.startsWith('/pillion.test.') ? undefined : res.end(`plain HTTP/${req.httpVersion} ${req.url}`)))
      const file = join(certs.dir, 'pillion.toml')
      writeFileSync(file, policy(certs, echo.port, echoTls.port, await closedPort(), web.url))
      writeFileSync(join(certs.dir, 'keys.json'), JSON.stringify({ [createHash('sha256').update('secret-key').digest('hex')]: 'tester' }))
      gateway = await startGateway(target, '', {}, file)
      client = clientOf(gateway.listeners.ingress!.replace('http://', ''))
    })

    after(async () => {
      for (const made of clients) made.close()
      await gateway?.stop()
      await echo?.stop()
      await echoTls?.stop()
      await web?.close()
    })

    it('carries a unary call with its metadata and trailers', async () => {
      const outcome = await say(client, 'hello', metadata({ 'x-tenant': 'acme' }))
      assert.equal(outcome.code, grpc.status.OK)
      assert.equal(outcome.value, 'hello (tenant acme)')
      assert.deepEqual(outcome.trailers.get('x-served-by'), ['echo'])
    })

    it('delivers an upstream failure with grpc-message and grpc-status-details-bin intact', async () => {
      const outcome = await say(client, 'fail')
      assert.equal(outcome.code, grpc.status.NOT_FOUND)
      assert.equal(outcome.details, 'no such thing: fail')
      assert.deepEqual(outcome.trailers.get('grpc-status-details-bin'), [DETAILS])
      assert.deepEqual(outcome.trailers.get('x-why'), ['asked to'])
    })

    it('logs and counts each call with the grpc-status it ended with', async () => {
      const outcome = await say(client, 'fail', metadata({ 'x-request-id': 'grpc-status-logged' }))
      assert.equal(outcome.code, grpc.status.NOT_FOUND)
      const line = await until('the access log line of the failed call', async () => gateway.stdout.find((l) => l.includes('"grpc-status-logged"')))
      assert.equal(JSON.parse(line).grpc_status, grpc.status.NOT_FOUND)
      assert.equal(JSON.parse(line).path, '/pillion.test.Echo/Say')
      const metrics = await (await fetch(`${gateway.admin}/metrics`)).text()
      assert.match(metrics, /^pillion_grpc_calls_total\{route="route-6",grpc_status="5"\} [1-9]/m)
    })

    it('streams from the server', async () => {
      const got: string[] = []
      const call = client.count('50')
      call.on('data', (message: string) => got.push(message))
      await new Promise((resolve, reject) => call.on('end', resolve).on('error', reject))
      assert.deepEqual(got, Array.from({ length: 50 }, (_, i) => `${i + 1}`))
    })

    it('passes a client that cancels a server stream on to the upstream, and keeps serving', async () => {
      const before = seen.cancelled
      const call = client.count('endless')
      await new Promise<void>((resolve) => call.once('data', () => resolve()))
      call.on('error', () => {})
      call.cancel()
      await until('the upstream to see the cancellation', async () => (seen.cancelled > before ? true : undefined))
      assert.equal((await say(client, 'still there')).value, 'still there (tenant none)')
    })

    it('streams from the client', async () => {
      const value = await new Promise<string>((resolve, reject) => {
        const call = client.collect((error: grpc.ServiceError | null, joined: string) => (error ? reject(error) : resolve(joined)))
        for (const part of ['a', 'b', 'c']) call.write(part)
        call.end()
      })
      assert.equal(value, 'a+b+c')
    })

    for (const route of ['default', 'retried']) {
      it(`carries a bidirectional stream, each answer before the next message is sent (${route} route)`, async () => {
        const got: string[] = []
        // A route that retries keeps a copy of the request but never holds a stream back for it.
        const call = client.chat(route === 'default' ? new grpc.Metadata() : metadata({ 'x-route': 'retried' }))
        await new Promise<void>((resolve, reject) => {
          call.on('data', (message: string) => {
            got.push(message)
            if (got.length < 5) call.write(`m${got.length}`)
            else call.end()
          })
          call.on('end', resolve)
          call.on('error', reject)
          call.write('m0')
        })
        assert.deepEqual(got, ['re: m0', 're: m1', 're: m2', 're: m3', 're: m4'])
      })
    }

    it('carries an 8 MB message each way', async () => {
      const big = 'x'.repeat(BIG)
      const outcome = await say(client, big)
      assert.equal(outcome.code, grpc.status.OK)
      assert.equal(outcome.value?.length, BIG + ' (tenant none)'.length)
    })

    it('serves HTTP/1.1 on the same port as h2c', async () => {
      const reply = await request(`${gateway.listeners.ingress}/web/page`)
      assert.equal(reply.status, 200)
      assert.equal(reply.body.toString(), 'plain HTTP/1.1 /web/page')
    })

    it('carries calls over TLS by ALPN h2 to an h2 upstream', async () => {
      const credentials = grpc.credentials.createSsl(readFileSync(certs.caCert))
      const secure = clientOf(gateway.listeners.secure!.replace('https://', ''), credentials, { 'grpc.ssl_target_name_override': 'localhost' })
      assert.equal((await say(secure, 'over tls')).value, 'over tls (tenant none)')
      assert.equal((await say(secure, 'fail')).code, grpc.status.NOT_FOUND)
    })

    it('serves HTTP/1.1 on the TLS listener beside h2, by ALPN', async () => {
      const reply = await new Promise<string>((resolve, reject) =>
        httpsGet(`${gateway.listeners.secure}/web/page`, { ca: readFileSync(certs.caCert), servername: 'localhost' }, (res) => {
          let body = ''
          res.on('data', (chunk) => (body += chunk))
          res.on('end', () => resolve(`${res.statusCode} HTTP/${res.httpVersion}: ${body}`))
        }).on('error', reject),
      )
      assert.equal(reply, '200 HTTP/1.1: plain HTTP/1.1 /web/page')
    })

    it('answers a method no route serves with UNIMPLEMENTED', async () => {
      const stranger = new grpc.Client(gateway.listeners.ingress!.replace('http://', ''), grpc.credentials.createInsecure())
      clients.push(stranger)
      const code = await new Promise<number>((resolve) => {
        stranger.makeUnaryRequest('/pillion.test.Nobody/Call', (s: string) => Buffer.from(s), (b: Buffer) => b.toString(), 'x', (error) => resolve(error?.code ?? 0))
      })
      assert.equal(code, grpc.status.UNIMPLEMENTED)
    })

    it('answers an unreachable upstream with UNAVAILABLE', async () => {
      const outcome = await say(client, 'hello', metadata({ 'x-route': 'down' }))
      assert.equal(outcome.code, grpc.status.UNAVAILABLE)
      assert.match(outcome.details, /could not be reached/)
    })

    it('answers a rate-limited call with RESOURCE_EXHAUSTED', async () => {
      const first = await say(client, 'one', metadata({ 'x-route': 'limited' }))
      assert.equal(first.code, grpc.status.OK)
      const second = await say(client, 'two', metadata({ 'x-route': 'limited' }))
      assert.equal(second.code, grpc.status.RESOURCE_EXHAUSTED)
    })

    it('answers a call without credentials with UNAUTHENTICATED, and lets one with them through', async () => {
      assert.equal((await say(client, 'hi', metadata({ 'x-route': 'guarded' }))).code, grpc.status.UNAUTHENTICATED)
      const allowed = await say(client, 'hi', metadata({ 'x-route': 'guarded', 'x-api-key': 'secret-key' }))
      assert.equal(allowed.code, grpc.status.OK)
    })

    it('retries a call the upstream answered UNAVAILABLE (trailers-only), when the route retries on "unavailable"', async () => {
      const outcome = await say(client, `flaky:retried-${target.name}`, metadata({ 'x-route': 'retried' }))
      assert.equal(outcome.code, grpc.status.OK)
      assert.equal(outcome.value, `flaky:retried-${target.name} after 3 calls`)
      const direct = await say(client, `flaky:not-retried-${target.name}`)
      assert.equal(direct.code, grpc.status.UNAVAILABLE, 'a route without retry passes the status on')
      assert.equal(direct.details, 'try again (call 1)')
    })

    it('opens a circuit breaker on gRPC failures behind HTTP 200, then answers UNAVAILABLE itself', async () => {
      const before = seen.unavailable
      for (let i = 0; i < 4; i++) assert.equal((await say(client, 'unavailable', metadata({ 'x-route': 'breaker' }))).code, grpc.status.UNAVAILABLE)
      assert.equal(seen.unavailable, before + 4)
      const refused = await say(client, 'unavailable', metadata({ 'x-route': 'breaker' }))
      assert.equal(refused.code, grpc.status.UNAVAILABLE)
      assert.match(refused.details, /circuit breaker .* is open/)
      assert.equal(seen.unavailable, before + 4, 'the open breaker kept the call from the upstream')
    })

    it("passes the time left of the call's deadline upstream as grpc-timeout", async () => {
      const slowBefore = seen.slowCalls
      const outcome = await say(client, 'slow', new grpc.Metadata(), { deadline: Date.now() + 800 })
      assert.equal(outcome.code, grpc.status.DEADLINE_EXCEEDED)
      assert.equal(seen.slowCalls, slowBefore + 1)
      assert.ok(seen.deadlineMs <= 800, `the upstream was given ${seen.deadlineMs}ms`)
    })

    it('answers DEADLINE_EXCEEDED itself when grpc-timeout passes, before the route timeout', async () => {
      // A bare HTTP/2 client with no deadline of its own: only the gateway can end this call.
      const session = connect(gateway.listeners.ingress!)
      try {
        const stream = session.request({ ':method': 'POST', ':path': '/pillion.test.Echo/Say', 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '300m', 'x-route': 'deaf' })
        stream.end(Buffer.concat([Buffer.from([0, 0, 0, 0, 4]), Buffer.from('slow')]))
        const [headers, flags] = await new Promise<[IncomingHttpHeaders, number]>((resolve) => stream.once('response', (h, f) => resolve([h, f])))
        assert.equal(headers[':status'], 200)
        assert.equal(headers['grpc-status'], '4')
        assert.equal(headers['x-pillion-error'], 'upstream_timeout')
        assert.equal(flags & constants.NGHTTP2_FLAG_END_STREAM, constants.NGHTTP2_FLAG_END_STREAM, 'trailers-only')
      } finally {
        session.close()
      }
    })
  })
}
