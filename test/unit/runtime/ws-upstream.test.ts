import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { UpstreamError } from '../../../src/core/upstream-error.ts'
import { forwardedHeaders, handshakeFailure, offeredProtocols } from '../../../src/runtime/ws-upstream.ts'

describe('the upstream WebSocket handshake on the runtime’s own client (Bun, Deno)', () => {
  it('offers the client’s subprotocols, however they were listed', () => {
    const headers = new Headers([['sec-websocket-protocol', 'a,b'], ['sec-websocket-protocol', ' c , ,d']])
    assert.deepEqual(offeredProtocols(headers), ['a', 'b', 'c', 'd'])
    assert.deepEqual(offeredProtocols(new Headers()), [])
  })

  it('sends the forwarded headers except those the client makes itself', () => {
    const headers = forwardedHeaders(
      new Headers({
        'sec-websocket-key': 'k',
        'sec-websocket-version': '13',
        'sec-websocket-extensions': 'permessage-deflate',
        'sec-websocket-protocol': 'a',
        upgrade: 'websocket',
        connection: 'Upgrade',
        host: 'gateway',
        cookie: 'sid=1',
        authorization: 'Bearer t',
        'x-request-id': 'r1',
        traceparent: '00-1-2-01',
        'x-forwarded-for': '10.0.0.1',
      }),
    )
    assert.deepEqual([...headers.keys()].sort(), ['authorization', 'cookie', 'traceparent', 'x-forwarded-for', 'x-request-id'])
  })

  it('reads a refusal’s status from the runtime’s error text as a protocol error naming it', () => {
    for (const text of [
      "WebSocket connection to 'ws://u/x' failed: Expected 101 status code: 403",
      'NetworkError: failed to connect to WebSocket: Invalid status code: 403',
    ]) {
      const error = handshakeFailure(text, 'ws://u/x')
      assert.ok(error instanceof UpstreamError)
      assert.equal(error.failure, 'protocol-error')
      assert.equal(error.message, 'upstream refused the WebSocket handshake with 403')
    }
  })

  it('calls a 101 the client will not take a protocol error (Bun, when no offered subprotocol was chosen)', () => {
    const error = handshakeFailure("WebSocket connection to 'ws://u/' failed: Missing client protocol", 'ws://u/')
    assert.equal(error.failure, 'protocol-error')
    assert.match(error.message, /Missing client protocol/)
  })

  it('calls no connection a connect failure, and anything else a reset', () => {
    assert.equal(handshakeFailure("WebSocket connection to 'ws://u/' failed: Failed to connect", 'ws://u/').failure, 'connect-failure')
    assert.equal(handshakeFailure('NetworkError: failed to connect to WebSocket: tcp connect error', 'ws://u/').failure, 'connect-failure')
    assert.equal(handshakeFailure('NetworkError: failed to connect to WebSocket: dns error', 'ws://u/').failure, 'connect-failure')
    assert.equal(handshakeFailure('closed with 1006 before opening', 'ws://u/').failure, 'reset')
  })
})
