// WebSockets through the gateway on every target, checked by the `ws` library on both sides (the
// client and the upstream), which the gateway was not written against.
import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import { after, before, describe, it } from 'node:test'
import WebSocket, { WebSocketServer, type RawData } from 'ws'
import { readFileSync } from 'node:fs'
import { createServer as createSecureServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { makeCertificates, type TestCertificates } from './security-helpers.ts'
import { closedPort, deferred, request, startGateway, startUpstream, targets, until, type Gateway, type Upstream } from './harness.ts'

/** What the upstream saw of each handshake, by the test's own id (sent as x-test-id). */
const handshakes = new Map<string, IncomingMessage>()
/** Close codes and reasons the upstream received, by test id. */
const upstreamCloses = new Map<string, ReturnType<typeof deferred<{ code: number; reason: string }>>>()
/** The upstream's side of each open connection, by test id. */
const upstreamSockets = new Map<string, WebSocket>()

function testId(): string {
  return `t-${Math.random().toString(36).slice(2)}`
}

/** The most the upstream's own send buffer held during a flood, by test id: it grows once the gateway stops reading. */
const floodBacklog = new Map<string, number>()
const FLOOD_CHUNK = Buffer.alloc(64 * 1024, 0x61)

/** Sends `total` bytes in 64 KiB messages as fast as the socket takes them, noting how much piles up unsent. */
function flood(ws: WebSocket, total: number, id: string): void {
  let sent = 0
  const pump = () => {
    while (sent < total && ws.readyState === WebSocket.OPEN) {
      ws.send(FLOOD_CHUNK)
      sent += FLOOD_CHUNK.length
      floodBacklog.set(id, Math.max(floodBacklog.get(id) ?? 0, ws.bufferedAmount))
      // Yield now and then, so the backlog is seen growing and other sockets get a turn.
      if (sent % (4 * 1024 * 1024) === 0) return void setImmediate(pump)
    }
  }
  pump()
}

/** An echo upstream on plain HTTP: see echoWebSockets. */
async function startWebSocketUpstream(): Promise<Upstream> {
  const upstream = await startUpstream((_req, res) => res.end('not a websocket'))
  echoWebSockets(upstream.server)
  return upstream
}

/** The same echo behind TLS, its certificate signed by the test CA. */
async function startSecureWebSocketUpstream(certs: TestCertificates): Promise<{ url: string; close(): Promise<void> }> {
  // It asks for a client certificate (mutual TLS): the gateway presents the upstream's cert and key.
  const server = createSecureServer(
    { cert: readFileSync(certs.serverCert), key: readFileSync(certs.serverKey), ca: readFileSync(certs.caCert), requestCert: true, rejectUnauthorized: true },
    (_req, res) => res.end('not a websocket'),
  )
  echoWebSockets(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
  return { url, close: () => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))) }
}

/** Echoes on every WebSocket: text stays text, binary stays binary; a few commands ask for more. */
function echoWebSockets(httpServer: import('node:http').Server): void {
  const server = new WebSocketServer({
    noServer: true,
    handleProtocols: (offered) => (offered.has('v2.proto') ? 'v2.proto' : false),
  })
  httpServer.on('upgrade', (req: IncomingMessage, socket, head) => {
    if (req.url?.startsWith('/deny')) {
      socket.end('HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 6\r\nconnection: close\r\n\r\ndenied')
      return
    }
    server.handleUpgrade(req, socket, head, (ws) => {
      const id = String(req.headers['x-test-id'] ?? '')
      handshakes.set(id, req)
      upstreamSockets.set(id, ws)
      const closed = upstreamCloses.get(id) ?? deferred<{ code: number; reason: string }>()
      upstreamCloses.set(id, closed)
      ws.on('close', (code, reason) => closed.resolve({ code, reason: reason.toString() }))
      ws.on('message', (data: RawData, isBinary) => {
        const text = isBinary ? '' : data.toString()
        if (text.startsWith('close:')) {
          const [, code, reason] = text.split(':')
          return ws.close(Number(code), reason)
        }
        if (text === 'fragments') {
          ws.send('first half, ', { fin: false })
          return ws.send('second half', { fin: true })
        }
        if (text === 'ping-me') return ws.ping('from upstream')
        if (text.startsWith('flood:')) return flood(ws, Number(text.slice(6)), id)
        ws.send(data, { binary: isBinary })
      })
    })
  })
}

function policy(upstreamUrl: string, refusedPort: number, secure: { url: string; ca: string; cert: string; key: string }): string {
  return `
[gateway]
service = "websockets"
admin = "127.0.0.1:0"
shutdown_grace = "2s"

[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"

[upstreams.local]
endpoints = ["${upstreamUrl}"]

[listeners.egress]
listen = "127.0.0.1:0"
direction = "egress"

[upstreams.secure]
endpoints = ["${secure.url}"]
ca = "${secure.ca}"
cert = "${secure.cert}"
key = "${secure.key}"

[[routes]]
name = "outbound"
listener = "egress"
host = "chat.internal"
path = "/*"
upstream = "secure"

[upstreams.refused]
endpoints = ["http://127.0.0.1:${refusedPort}"]

[[routes]]
name = "off"
listener = "ingress"
path = "/off/*"
upstream = "local"
[routes.websocket]
enabled = false

[[routes]]
name = "one"
listener = "ingress"
path = "/one/*"
upstream = "local"
strip_prefix = "/one"
[routes.websocket]
max_connections = 1

[[routes]]
name = "small"
listener = "ingress"
path = "/small/*"
upstream = "local"
strip_prefix = "/small"
[routes.websocket]
max_message = "1kb"

[[routes]]
name = "quiet"
listener = "ingress"
path = "/quiet/*"
upstream = "local"
strip_prefix = "/quiet"
[routes.websocket]
idle_timeout = "200ms"

[[routes]]
name = "firehose"
listener = "ingress"
path = "/firehose/*"
upstream = "local"
strip_prefix = "/firehose"
[routes.websocket]
max_message = "1mb"

[[routes]]
name = "blocked"
listener = "ingress"
path = "/blocked/*"
upstream = "local"
ip = { deny = ["127.0.0.0/8", "::1/128"] }

[[routes]]
name = "down"
listener = "ingress"
path = "/down/*"
upstream = "refused"

[[routes]]
name = "echo"
listener = "ingress"
path = "/*"
upstream = "local"
`
}

interface Opened {
  ws: WebSocket
  id: string
  closed: Promise<{ code: number; reason: string }>
}

/** Opens a client through the gateway; resolves once open, rejects with the HTTP answer when refused. */
function open(url: string, options: { protocols?: string[]; headers?: Record<string, string> } = {}): Promise<Opened> {
  const id = testId()
  upstreamCloses.set(id, deferred<{ code: number; reason: string }>())
  const ws = new WebSocket(url, options.protocols ?? [], { headers: { 'x-test-id': id, ...options.headers } })
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })))
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws, id, closed }))
    ws.once('unexpected-response', (_req, res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (body += chunk))
      res.on('end', () => reject(Object.assign(new Error(`refused with ${res.statusCode}`), { status: res.statusCode, body })))
    })
    ws.once('error', reject)
  })
}

function nextMessage(ws: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  return new Promise((resolve) => ws.once('message', (data: RawData, isBinary) => resolve({ data: Buffer.from(data as Buffer), isBinary })))
}

async function refusal(url: string): Promise<{ status: number; body: string }> {
  try {
    const { ws } = await open(url)
    ws.terminate()
  } catch (error) {
    const { status, body } = error as { status?: number; body?: string }
    if (status !== undefined) return { status, body: body ?? '' }
    throw error
  }
  throw new Error(`${url} was not refused`)
}

for (const target of targets()) {
  describe(`websockets on ${target.name}`, { skip: target.missing }, () => {
    let upstream: Upstream
    let secure: { url: string; close(): Promise<void> }
    let gateway: Gateway
    let base: string

    before(async () => {
      const certs = makeCertificates()
      upstream = await startWebSocketUpstream()
      secure = await startSecureWebSocketUpstream(certs)
      gateway = await startGateway(target, policy(upstream.url, await closedPort(), { url: secure.url, ca: certs.caCert, cert: certs.clientCert, key: certs.clientKey }))
      base = gateway.listeners.ingress!.replace(/^http/, 'ws')
    })

    after(async () => {
      await gateway?.stop()
      await upstream?.close()
      await secure?.close()
    })

    it('carries a WebSocket from the egress listener to a wss:// upstream signed by its own CA that asks for a client certificate', async () => {
      const egress = gateway.listeners.egress!.replace(/^http/, 'ws')
      const { ws, id } = await open(`${egress}/feed`, { headers: { host: 'chat.internal' } })
      assert.equal(handshakes.get(id)!.headers['x-forwarded-host'], 'chat.internal')
      ws.send('over tls')
      assert.equal((await nextMessage(ws)).data.toString(), 'over tls')
      ws.close(1000)
    })

    it('carries text and binary messages both ways, with the upstream choosing the subprotocol', async () => {
      const { ws, id } = await open(`${base}/chat?room=1`, {
        protocols: ['v1.proto', 'v2.proto'],
        headers: { cookie: 'session=abc', authorization: 'Bearer token-1', 'x-request-id': 'ws-request-1' },
      })
      assert.equal(ws.protocol, 'v2.proto')
      const seen = handshakes.get(id)!
      assert.equal(seen.url, '/chat?room=1')
      assert.equal(seen.headers.cookie, 'session=abc')
      assert.equal(seen.headers.authorization, 'Bearer token-1')
      assert.equal(seen.headers['x-request-id'], 'ws-request-1')
      assert.deepEqual(String(seen.headers['sec-websocket-protocol']).split(',').map((p) => p.trim()), ['v1.proto', 'v2.proto'])
      ws.send('hello')
      const text = await nextMessage(ws)
      assert.deepEqual([text.data.toString(), text.isBinary], ['hello', false])
      ws.send(Buffer.from([0, 1, 2, 255]))
      const binary = await nextMessage(ws)
      assert.deepEqual([[...binary.data], binary.isBinary], [[0, 1, 2, 255], true])
      ws.close(1000)
    })

    it('delivers fragmented messages whole, in both directions', async () => {
      const { ws, id } = await open(`${base}/fragments`)
      ws.send('fragments')
      assert.equal((await nextMessage(ws)).data.toString(), 'first half, second half')
      const arrived = new Promise<string>((resolve) => upstreamSockets.get(id)!.once('message', (data: RawData) => resolve(data.toString())))
      ws.send('one, ', { fin: false })
      ws.send('two', { fin: true })
      assert.equal(await arrived, 'one, two')
      ws.close(1000)
    })

    it('passes close codes and reasons on, both ways', async () => {
      const fromUpstream = await open(`${base}/close`)
      fromUpstream.ws.send('close:4001:bye')
      assert.deepEqual(await fromUpstream.closed, { code: 4001, reason: 'bye' })

      const fromClient = await open(`${base}/close`)
      fromClient.ws.close(4002, 'later')
      assert.deepEqual(await upstreamCloses.get(fromClient.id)!.promise, { code: 4002, reason: 'later' })
    })

    it('answers pings, and forwards the upstream ping where the runtime lets it', async () => {
      const { ws } = await open(`${base}/ping`)
      const pong = new Promise<string>((resolve) => ws.once('pong', (data) => resolve(data.toString())))
      ws.ping('are you there')
      assert.equal(await pong, 'are you there')
      if (target.name !== 'deno') {
        // Deno's WebSocket API has no ping: it answers pings itself and forwards none (docs/runtimes.md).
        const ping = new Promise<string>((resolve) => ws.once('ping', (data) => resolve(data.toString())))
        ws.send('ping-me')
        assert.equal(await ping, 'from upstream')
      }
      ws.close(1000)
    })

    it('refuses handshakes with the usual JSON answers: policy, websocket.enabled, a dead upstream', async () => {
      const blocked = await refusal(`${base}/blocked/x`)
      assert.equal(blocked.status, 403)
      assert.equal(JSON.parse(blocked.body).code, 'forbidden')
      const off = await refusal(`${base}/off/x`)
      assert.equal(off.status, 403)
      assert.equal(JSON.parse(off.body).code, 'websocket_disabled')
      const down = await refusal(`${base}/down/x`)
      assert.equal(down.status, 502)
      assert.equal(JSON.parse(down.body).code, 'upstream_unavailable')
    })

    it("passes on the upstream's refusal of the handshake", async () => {
      const denied = await refusal(`${base}/deny`)
      if (target.name === 'node') assert.equal(denied.status, 403, 'Node relays the upstream answer as it came')
      else assert.equal(denied.status, 502, 'Bun and Deno WebSocket clients only report that the upstream refused')
    })

    it('limits open connections per route, and frees the slot when one closes', async () => {
      const first = await open(`${base}/one/a`)
      const second = await refusal(`${base}/one/b`)
      assert.equal(second.status, 503)
      assert.equal(JSON.parse(second.body).code, 'too_many_connections')
      first.ws.close(1000)
      await first.closed
      const third = await until('the slot to come free', async () => {
        try {
          return await open(`${base}/one/c`)
        } catch {
          return undefined
        }
      })
      third.ws.close(1000)
    })

    it('closes with 1009 on both sides when a message is larger than max_message', async () => {
      const { ws, id, closed } = await open(`${base}/small/x`)
      ws.send('x'.repeat(2048))
      assert.equal((await closed).code, 1009)
      const upstreamSaw = await upstreamCloses.get(id)!.promise
      // Deno's WebSocket client may send only 1000 or 3000-4999, so it tells the upstream 1000 with the reason.
      assert.ok([1009, 1000].includes(upstreamSaw.code), `upstream saw ${upstreamSaw.code}`)
    })

    it('closes an idle connection with 1001 after idle_timeout', async () => {
      const { closed, id } = await open(`${base}/quiet/x`)
      assert.equal((await closed).code, 1001)
      const upstreamSaw = await upstreamCloses.get(id)!.promise
      assert.ok([1001, 1000].includes(upstreamSaw.code), `upstream saw ${upstreamSaw.code}`)
    })

    it('counts open connections in /metrics, and what each carried when it closes, with an access-log line', async () => {
      const { ws, closed } = await open(`${base}/metrics-probe`, { headers: { 'x-request-id': 'ws-metrics-1' } })
      const metrics = await request(`${gateway.admin}/metrics`)
      assert.match(metrics.body.toString(), /pillion_websocket_connections\{route="echo"\} 1/)
      const sample = (text: string, direction: string) => Number(new RegExp(`pillion_websocket_messages_total\\{route="echo",direction="${direction}"\\} (\\d+)`).exec(text)?.[1] ?? 0)
      const before = sample(metrics.body.toString(), 'in')
      ws.send('one')
      await nextMessage(ws)
      ws.send('two')
      await nextMessage(ws)
      ws.close(1000, 'done')
      await closed
      const line = await gateway.waitForLine(/"type":"websocket_close".*"request_id":"ws-metrics-1"/)
      const logged = JSON.parse(line)
      assert.deepEqual(
        [logged.route, logged.close_code, logged.close_reason, logged.closed_by, logged.messages_in, logged.messages_out, logged.bytes_in],
        ['echo', 1000, 'done', 'client', 2, 2, 6],
      )
      const after = await until('the closed connection to be counted', async () => {
        const text = (await request(`${gateway.admin}/metrics`)).body.toString()
        return sample(text, 'in') >= before + 2 ? text : undefined
      })
      assert.match(after, /pillion_websocket_connections\{route="echo"\} 0/)
    })

    it('holds the upstream back while the client does not read, and delivers everything once it does', { timeout: 60_000 }, async () => {
      const total = 48 * 1024 * 1024
      const { ws, id, closed } = await open(`${base}/firehose/x`)
      const socket = (ws as unknown as { _socket: import('node:net').Socket })._socket
      socket.pause()
      ws.send(`flood:${total}`)
      if (target.name === 'deno') {
        // Deno's WebSocket cannot stop reading: past max_message + 16 MiB waiting for the client, the
        // gateway closes both sides. The client reads nothing until then: had it read at once, a fast
        // machine could have kept up with the flood, and nothing would ever close. (The upstream sees
        // 1000: a WebSocket client such as Deno's may close with 1000 or 3000-4999 only.)
        await upstreamCloses.get(id)!.promise
        socket.resume()
        const code = (await closed).code
        assert.ok([1013, 1006].includes(code), `closed with ${code}`)
        return
      }
      // The gateway stops reading the upstream, so the flood piles up in the upstream's own buffer.
      await until('the upstream to be held back', async () => ((floodBacklog.get(id) ?? 0) > 16 * 1024 * 1024 ? true : undefined), 30_000)
      let received = 0
      const all = new Promise<void>((resolve) =>
        ws.on('message', (data: RawData) => {
          received += (data as Buffer).length
          if (received >= total) resolve()
        }),
      )
      socket.resume()
      await all
      assert.equal(received, total)
      ws.close(1000)
    })

    // Last: it stops the gateway.
    it('closes open WebSockets with 1001 when the gateway shuts down', async () => {
      const { closed, id } = await open(`${base}/drain`)
      const exited = gateway.stop('SIGTERM')
      assert.equal((await closed).code, 1001)
      const upstreamSaw = await upstreamCloses.get(id)!.promise
      assert.ok([1001, 1000].includes(upstreamSaw.code), `upstream saw ${upstreamSaw.code}`)
      assert.equal(await exited, 0)
    })
  })
}
