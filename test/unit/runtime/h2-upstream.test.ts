import assert from 'node:assert/strict'
import { createServer, type Http2Server, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { after, describe, test } from 'node:test'
import { UpstreamError } from '../../../src/core/upstream-error.ts'
import { http2Upstream } from '../../../src/runtime/h2-upstream.ts'
import type { UpstreamRequest } from '../../../src/core/host.ts'
import { closedPort } from '../../e2e/harness.ts'

const servers: Http2Server[] = []
const sessions: ServerHttp2Session[] = []

/** An h2c server on 127.0.0.1 that counts its connections; `answer` handles each stream. */
async function h2cServer(answer: (stream: ServerHttp2Stream, headers: Record<string, unknown>) => void, settings = {}) {
  const server = createServer({ settings })
  const state = { origin: '', connections: 0 }
  server.on('session', (session) => {
    state.connections++
    sessions.push(session)
  })
  server.on('stream', (stream, headers) => answer(stream, headers))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  servers.push(server)
  state.origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return state
}

after(() => {
  // The client keeps idle connections for a while; the servers end them rather than wait.
  for (const session of sessions) session.destroy()
  for (const server of servers) server.close()
})

function call(url: string, extra: Partial<UpstreamRequest> = {}) {
  return http2Upstream({ url, method: 'POST', headers: new Headers({ 'content-type': 'application/grpc' }), body: null, signal: new AbortController().signal, connectTimeoutMs: 2_000, protocol: 'h2c', ...extra })
}

async function text(body: ReadableStream<Uint8Array> | Uint8Array | null): Promise<string> {
  return body === null ? '' : new Response(body as BodyInit).text()
}

describe('the HTTP/2 upstream client', () => {
  test('sends te: trailers and the body, and hands over the answer with its trailers once the body ends', async () => {
    const server = await h2cServer((stream, headers) => {
      let got = ''
      stream.on('data', (chunk) => (got += chunk))
      stream.on('end', () => {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true })
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'x-te': String(headers.te) }))
        stream.end(`echo ${got}`)
      })
    })
    const answer = await call(`${server.origin}/svc/Method`, { body: new TextEncoder().encode('ping') })
    assert.equal(answer.status, 200)
    assert.equal(await text(answer.body), 'echo ping')
    const trailers = await answer.trailers!
    assert.equal(trailers.get('grpc-status'), '0')
    assert.equal(trailers.get('x-te'), 'trailers')
  })

  test('multiplexes calls to one origin over one connection', async () => {
    const server = await h2cServer((stream) => {
      stream.respond({ ':status': 200 })
      stream.end('ok')
    })
    const answers = await Promise.all(Array.from({ length: 10 }, () => call(`${server.origin}/x`)))
    for (const answer of answers) assert.equal(await text(answer.body), 'ok')
    assert.equal(server.connections, 1)
  })

  test('opens a new connection after the server says GOAWAY', async () => {
    const server = await h2cServer((stream) => {
      stream.respond({ ':status': 200 })
      stream.end('ok')
      stream.session?.goaway(0)
    })
    assert.equal(await text((await call(`${server.origin}/first`)).body), 'ok')
    assert.equal(await text((await call(`${server.origin}/second`)).body), 'ok')
    assert.equal(server.connections, 2)
  })

  test('opens another connection when one carries as many calls as the server allows (SETTINGS_MAX_CONCURRENT_STREAMS)', async () => {
    const waiting: ServerHttp2Stream[] = []
    const server = await h2cServer(
      (stream) => {
        waiting.push(stream)
        // Answered only once two are open at a time: the others must wait for a slot, not fail.
        if (waiting.length === 2) for (const open of waiting.splice(0)) {
          open.respond({ ':status': 200 })
          open.end('ok')
        }
      },
      { maxConcurrentStreams: 2 },
    )
    const answers = await Promise.all(Array.from({ length: 6 }, () => call(`${server.origin}/x`)))
    for (const answer of answers) assert.equal(await text(answer.body), 'ok')
    // A second connection at least; a third unless the first freed its streams before it was needed.
    assert.ok(server.connections >= 2 && server.connections <= 3, `${server.connections} connections`)
  })

  test('a body cancelled while the upstream still sends is dropped quietly, and the connection serves on', async () => {
    let streams = 0
    const server = await h2cServer((stream) => {
      streams++
      stream.respond({ ':status': 200 })
      // Keeps writing after the client cancels: late frames must not reach the closed web stream.
      const chunk = Buffer.alloc(16 * 1024, 0x61)
      const timer = setInterval(() => (stream.destroyed ? clearInterval(timer) : stream.write(chunk)), 1)
      stream.once('close', () => clearInterval(timer))
    })
    const answer = await call(`${server.origin}/endless`)
    const reader = (answer.body as ReadableStream<Uint8Array>).getReader()
    await reader.read()
    await reader.cancel()
    // Same connection: the cancelled stream's late frames arrive before this answer's.
    const again = await call(`${server.origin}/endless`)
    await (again.body as ReadableStream<Uint8Array>).cancel()
    assert.equal(streams, 2)
    assert.equal(server.connections, 1)
  })

  test('reports a refused connection as a connect failure', async () => {
    const error = await call(`http://127.0.0.1:${await closedPort()}/x`).then(
      () => assert.fail('expected the call to fail'),
      (e: unknown) => e,
    )
    assert.ok(error instanceof UpstreamError)
    assert.equal(error.failure, 'connect-failure')
  })

  test('cancels the stream when the try is aborted, with the abort reason', async () => {
    let closed: Promise<void> | undefined
    const server = await h2cServer((stream) => {
      closed = new Promise((resolve) => stream.once('close', resolve))
    })
    const controller = new AbortController()
    const pending = call(`${server.origin}/hang`, { signal: controller.signal })
    while (closed === undefined) await new Promise((resolve) => setImmediate(resolve))
    controller.abort(new Error('deadline'))
    await assert.rejects(pending, /deadline/)
    await closed
  })

  test('reads a small answer with a declared length whole (bufferUpTo), its trailers settled with it', async () => {
    const server = await h2cServer((stream) => {
      stream.respond({ ':status': 200, 'content-length': '5' }, { waitForTrailers: true })
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }))
      stream.end('hello')
    })
    const answer = await call(`${server.origin}/small`, { bufferUpTo: 1024 })
    assert.ok(answer.body instanceof Uint8Array)
    assert.equal(await text(answer.body), 'hello')
    assert.equal((await answer.trailers!).get('grpc-status'), '0')
  })

  test('streams an answer whose declared length is over bufferUpTo', async () => {
    const server = await h2cServer((stream) => {
      stream.respond({ ':status': 200, 'content-length': '2048' })
      stream.end('x'.repeat(2048))
    })
    const answer = await call(`${server.origin}/large`, { bufferUpTo: 1024 })
    assert.ok(answer.body instanceof ReadableStream)
    assert.equal((await text(answer.body)).length, 2048)
  })

  test('an answer without a length that is still open is handed over at once, what came first leading its stream', async () => {
    let finish!: () => void
    const finished = new Promise<void>((resolve) => (finish = resolve))
    const server = await h2cServer((stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' })
      stream.write('first ')
      // Ends only once the client has the answer: a client that waited for the end would never get it.
      void finished.then(() => stream.end('second'))
    })
    const answer = await call(`${server.origin}/open`, { bufferUpTo: 1024 })
    finish()
    assert.ok(answer.body instanceof ReadableStream)
    assert.equal(await text(answer.body), 'first second')
  })
})
