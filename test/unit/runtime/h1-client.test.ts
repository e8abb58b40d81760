import assert from 'node:assert/strict'
import { createServer, type Server, type IncomingMessage, type ServerResponse } from 'node:http'
import { connect, createServer as createTcpServer, type AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { h1Client, poolsPerUpstreamTls, type Dial } from '../../../src/runtime/h1-client.ts'
import { ChunkedDecoder, parseHead, ProtocolError } from '../../../src/runtime/h1-wire.ts'
import { UpstreamError } from '../../../src/core/upstream-error.ts'

/** The client on node:net, as Bun's and Deno's dialers give it their sockets; counts the connections it opens. */
let dialled = 0
const netDial: Dial = (target, events, deadlineMs) =>
  new Promise((resolve, reject) => {
    dialled++
    const socket = connect(target.port, target.host)
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new UpstreamError('connect-timeout', 'deadline'))
    }, deadlineMs)
    socket.once('connect', () => {
      clearTimeout(timer)
      resolve({
        write: (bytes) => new Promise<void>((done) => socket.write(bytes, () => done())),
        pause: () => socket.pause(),
        resume: () => socket.resume(),
        destroy: () => socket.destroy(),
      })
    })
    socket.on('data', (chunk) => events.data(chunk))
    socket.on('end', () => events.closed())
    socket.on('close', () => events.closed())
    socket.on('error', (error) => {
      clearTimeout(timer)
      reject(new UpstreamError('connect-failure', error.message))
      events.closed(error)
    })
  })

const send = h1Client(netDial, poolsPerUpstreamTls())

function call(url: string, init: { method?: string; body?: ReadableStream<Uint8Array> | Uint8Array; bufferUpTo?: number; headers?: Headers } = {}) {
  return send({ url, method: init.method ?? 'GET', headers: init.headers ?? new Headers(), body: init.body ?? null, signal: new AbortController().signal, connectTimeoutMs: 1000, ...(init.bufferUpTo === undefined ? {} : { bufferUpTo: init.bufferUpTo }) })
}

async function text(body: ReadableStream<Uint8Array> | Uint8Array | null): Promise<string> {
  if (body === null) return ''
  if (body instanceof Uint8Array) return new TextDecoder().decode(body)
  return new Response(body).text()
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url!, 'http://x')
  if (url.pathname === '/chunked') {
    res.write('one,')
    setImmediate(() => res.end('two'))
  } else if (url.pathname === '/close') {
    res.socket!.end('HTTP/1.1 200 OK\r\n\r\nuntil the end')
  } else if (url.pathname === '/echo') {
    const chunks: Buffer[] = []
    req.on('data', (chunk) => chunks.push(chunk))
    req.on('end', () => res.end(JSON.stringify({ body: Buffer.concat(chunks).toString(), framing: req.headers['transfer-encoding'] ?? req.headers['content-length'], host: req.headers.host })))
  } else if (url.pathname === '/early') {
    res.writeEarlyHints({ link: '</a>' })
    res.end('after 103')
  } else res.end(`path ${url.pathname}${url.search}`)
}

describe('Pillion’s own HTTP/1.1 upstream client', () => {
  let server: Server
  let base: string
  before(async () => {
    server = createServer({ keepAliveTimeout: 10_000 }, handle)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  after(() => server.close())

  it('sends the path and query, the Host of the URL, and keeps the connection for the next call', async () => {
    const before = dialled
    for (let i = 0; i < 3; i++) {
      const answer = await call(`${base}/a/b?c=${i}`)
      assert.equal(answer.status, 200)
      assert.equal(await text(answer.body), `path /a/b?c=${i}`)
    }
    assert.equal(dialled - before, 1)
  })

  it('reads a chunked answer as a stream, and a small one whole with bufferUpTo', async () => {
    const streamed = await call(`${base}/chunked`)
    assert.ok(streamed.body instanceof ReadableStream)
    assert.equal(await text(streamed.body), 'one,two')
    const whole = await call(`${base}/x`, { bufferUpTo: 1024 })
    assert.ok(whole.body instanceof Uint8Array)
    assert.equal(await text(whole.body), 'path /x')
  })

  it('reads a close-delimited answer to its end', async () => {
    assert.equal(await text((await call(`${base}/close`)).body), 'until the end')
  })

  it('skips a 103 and answers with what follows', async () => {
    const answer = await call(`${base}/early`)
    assert.equal(answer.status, 200)
    assert.equal(await text(answer.body), 'after 103')
  })

  it('sends a streamed body chunked, a known length as is, and bytes with their length', async () => {
    const stream = () => new Blob(['hello ', 'world']).stream()
    const chunked = JSON.parse(await text((await call(`${base}/echo`, { method: 'POST', body: stream() })).body))
    assert.deepEqual(chunked, { body: 'hello world', framing: 'chunked', host: new URL(base).host })
    const declared = JSON.parse(await text((await call(`${base}/echo`, { method: 'POST', body: stream(), headers: new Headers({ 'content-length': '11' }) })).body))
    assert.equal(declared.framing, '11')
    const bytes = JSON.parse(await text((await call(`${base}/echo`, { method: 'PUT', body: new TextEncoder().encode('abc') })).body))
    assert.deepEqual([bytes.body, bytes.framing], ['abc', '3'])
  })

  it('closes a connection idle for 3 s at the next sweep, and sweeps only while any is idle', async () => {
    let now = 0
    let sweep: (() => void) | undefined
    let stopped = 0
    const clock = { now: () => now, every: (run: () => void) => (sweep = run), stop: () => void stopped++ }
    const timed = h1Client(netDial, poolsPerUpstreamTls(), clock)
    const get = async () => {
      const answer = await timed({ url: `${base}/idle`, method: 'GET', headers: new Headers(), body: null, signal: new AbortController().signal, connectTimeoutMs: 1000 })
      return text(answer.body)
    }
    const before = dialled
    assert.equal(await get(), 'path /idle')
    assert.ok(sweep, 'a parked connection starts the sweep')
    now = 2_999
    sweep!()
    assert.equal(await get(), 'path /idle')
    assert.equal(dialled - before, 1, 'idle under 3 s: reused')
    now += 3_000
    sweep!()
    assert.equal(stopped, 1, 'nothing idle is left: the sweep stops')
    assert.equal(await get(), 'path /idle')
    assert.equal(dialled - before, 2, 'idle 3 s: closed, so the next call dials')
  })

  it('fails a connect refused as connect-failure', async () => {
    const closed = createTcpServer()
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
    const port = (closed.address() as AddressInfo).port
    closed.close()
    await assert.rejects(call(`http://127.0.0.1:${port}/`), (error: UpstreamError) => error.failure === 'connect-failure')
  })

  it('an abort rejects the call with the signal’s reason', async () => {
    const controller = new AbortController()
    const pending = send({ url: `${base}/echo`, method: 'POST', headers: new Headers(), body: new ReadableStream(), signal: controller.signal, connectTimeoutMs: 1000 })
    controller.abort(new Error('deadline'))
    await assert.rejects(pending, /deadline/)
  })
})

describe('HTTP/1.1 answer framing', () => {
  const head = (text: string, method = 'GET') => parseHead(new TextEncoder().encode(text), method)

  it('frames by Transfer-Encoding over Content-Length, by length, or by close', () => {
    assert.deepEqual(head('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n').framing, { kind: 'chunked' })
    assert.deepEqual(head('HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n').framing, { kind: 'length', length: 5 })
    const closing = head('HTTP/1.1 200 OK\r\n\r\n')
    assert.deepEqual([closing.framing, closing.keepAlive], [{ kind: 'close' }, false])
    assert.deepEqual(head('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n', 'HEAD').framing, { kind: 'none' })
    assert.equal(head('HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n').keepAlive, false)
    assert.equal(head('HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n').keepAlive, false)
  })

  it('reads the framing headers in any case and across repeated lines, as Headers.get joins them', () => {
    assert.deepEqual(head('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nCONTENT-LENGTH: 5\r\n\r\n').framing, { kind: 'length', length: 5 })
    assert.throws(() => head('HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n'), ProtocolError)
    assert.deepEqual(head('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\ntransfer-encoding: Chunked\r\n\r\n').framing, { kind: 'chunked' })
    assert.deepEqual(head('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n').framing, { kind: 'close' })
    assert.equal(head('HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: Close\r\ncontent-length: 1\r\n\r\n').keepAlive, false)
    assert.equal(head('HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\ncontent-length: 1\r\n\r\n').keepAlive, true)
    assert.equal(head('HTTP/1.1 200 OK\r\nConnection: x-trace, close\r\ncontent-length: 1\r\n\r\n').keepAlive, false)
    const notClose = head('HTTP/1.1 200 OK\r\nConnection: close-me\r\nclose-me: 1\r\ncontent-length: 1\r\n\r\n')
    assert.deepEqual([notClose.keepAlive, notClose.headers.get('close-me')], [true, null], 'options are whole tokens; the one named is still dropped')
    assert.equal(head('HTTP/1.0 200 OK\r\nConnection: keep-alive-ish\r\ncontent-length: 1\r\n\r\n').keepAlive, false)
    const other = head('HTTP/1.1 200 OK\r\ncontent-lengtx: 9\r\nx-connection: close\r\ncontent-length: 2\r\n\r\n')
    assert.deepEqual([other.framing, other.keepAlive, other.headers.get('content-lengtx')], [{ kind: 'length', length: 2 }, true, '9'])
  })

  it('leaves the hop-by-hop fields and those Connection names out of the headers, in any case', () => {
    const parsed = head(
      'HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\nTE: trailers\r\nTrailer: x\r\nUpgrade: h2c\r\n' +
        'Proxy-Authenticate: Basic\r\nProxy-Connection: close\r\nProxy-Authorization: x\r\nx-kept: 2\r\ncontent-length: 1\r\nconnection: X-Gone\r\nx-gone: 3\r\n\r\n',
    )
    assert.deepEqual([...parsed.headers], [['content-length', '1'], ['x-kept', '2']])
    assert.equal(parsed.keepAlive, true)
    const chunked = head('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nconnection: close\r\nclose: 1\r\n\r\n')
    assert.deepEqual([[...chunked.headers], chunked.framing, chunked.keepAlive], [[], { kind: 'chunked' }, false])
  })

  it('refuses a value Headers would refuse in a hop-by-hop field it never sees', () => {
    assert.throws(() => head('HTTP/1.1 200 OK\r\nkeep-alive: a\nb\r\ncontent-length: 0\r\n\r\n'), /may not carry \(keep-alive\)/)
    assert.throws(() => head('HTTP/1.1 200 OK\r\nx-other: a\0b\r\ncontent-length: 0\r\n\r\n'), /may not carry \(x-other\)/)
    assert.throws(() => head('HTTP/1.1 200 OK\r\nbad name: 1\r\n\r\n'), /malformed header line/)
  })

  it('refuses conflicting lengths, a bad status line and a bad header line', () => {
    assert.throws(() => head('HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\n'), ProtocolError)
    assert.throws(() => head('ICY 200 OK\r\n\r\n'), ProtocolError)
    assert.throws(() => head('HTTP/1.1 200 OK\r\nno colon here\r\n\r\n'), ProtocolError)
  })

  it('decodes chunks split anywhere, with extensions and trailers, and says where the body ends', () => {
    const wire = new TextEncoder().encode('5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\ntrailer: x\r\n\r\nNEXT')
    for (let split = 1; split < wire.length - 4; split++) {
      const decoder = new ChunkedDecoder()
      let out = ''
      const collect = (data: Uint8Array) => (out += new TextDecoder().decode(data))
      assert.equal(decoder.push(wire.subarray(0, split), collect), -1)
      const used = decoder.push(wire.subarray(split), collect)
      assert.equal(out, 'hello world')
      assert.equal(split + used, wire.length - 4)
    }
    assert.throws(() => new ChunkedDecoder().push(new TextEncoder().encode('zz\r\n'), () => {}), ProtocolError)
  })
})
