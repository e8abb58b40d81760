import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { copyWhileStreaming } from '../../../src/proxy/replay.ts'
import { exchangeFor } from '../fakes/security-fakes.ts'

const bytes = (text: string) => new TextEncoder().encode(text)

/** A client body the test feeds by hand: chunks arrive when pushed, and it ends when closed. */
function clientStream() {
  let controller!: ReadableStreamDefaultController<Uint8Array>
  const stream = new ReadableStream<Uint8Array>({ start: (c) => void (controller = c) })
  return { stream, push: (text: string) => controller.enqueue(bytes(text)), end: () => controller.close() }
}

function grpcExchange(stream: ReadableStream<Uint8Array>) {
  return exchangeFor('http://gw.test/orders.Orders/Watch', { method: 'POST', headers: { 'content-type': 'application/grpc' }, body: stream })
}

describe('a gRPC body copied while it streams', () => {
  test('each chunk goes on as it arrives, before the body ends', async () => {
    const client = clientStream()
    const exchange = grpcExchange(client.stream)
    copyWhileStreaming(exchange, 1024)
    const reader = (exchange.body as ReadableStream<Uint8Array>).getReader()
    client.push('first message')
    assert.deepEqual((await reader.read()).value, bytes('first message'))
  })

  test('a body that ended (a unary call) is replayable whole, with what the try had not read', async () => {
    const client = clientStream()
    const exchange = grpcExchange(client.stream)
    const copy = copyWhileStreaming(exchange, 1024)
    client.push('he')
    client.push('llo')
    client.end()
    const reader = (exchange.body as ReadableStream<Uint8Array>).getReader()
    await reader.read() // the failed try read only the first chunk
    assert.equal(await copy.replayable(), true)
    assert.deepEqual(exchange.body, bytes('hello'))
  })

  test('a body still streaming, or longer than max_body, is never replayed and loses nothing', async () => {
    const open = clientStream()
    const streaming = grpcExchange(open.stream)
    const copy = copyWhileStreaming(streaming, 1024)
    open.push('one')
    const reader = (streaming.body as ReadableStream<Uint8Array>).getReader()
    await reader.read()
    assert.equal(await copy.replayable(), false)
    open.push('two')
    assert.deepEqual((await reader.read()).value, bytes('two'), 'the stream goes on where it was')

    const big = clientStream()
    const large = grpcExchange(big.stream)
    const bigCopy = copyWhileStreaming(large, 4)
    big.push('12345')
    big.end()
    assert.equal(await bigCopy.replayable(), false)
  })
})
