import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { GatewayError } from '../../../../src/core/errors.ts'
import type { WebSocketClose, WebSocketSession } from '../../../../src/core/websocket.ts'
import { websocketLayer, type WebSocketPolicy } from '../../../../src/policies/websocket/index.ts'
import type { Exchange, Step } from '../../../../src/proxy/exchange.ts'
import { exchangeFor, fakeContext, record } from '../../fakes/security-fakes.ts'
import { loadConfigText } from '../../../../src/config/load.ts'
import { ONE_ROUTE, problemLines } from '../../fakes/policy-text.ts'

/** The route's normalized websocket policy for a [routes.websocket] table. */
function policyOf(table: string): WebSocketPolicy | undefined {
  return loadConfigText(`${ONE_ROUTE}${table}`, 'p.toml').routes[0]!.policies.websocket
}

const CLOSED: WebSocketClose = { code: 1000, reason: '', by: 'client', messagesIn: 3, bytesIn: 30, messagesOut: 4, bytesOut: 40 }

function handshake(): Exchange {
  const exchange = exchangeFor('http://gw/chat', { headers: { upgrade: 'websocket', connection: 'Upgrade' } })
  exchange.upgrade = true
  return exchange
}

/** The forwarder's part, as far as the layer cares: accept (a session) or not. */
function upstream(accept: boolean): Step {
  return async (exchange) => {
    if (accept && exchange.websocket !== undefined) exchange.session = { ...exchange.websocket!, route: 'r', upstream: { protocol: '', headers: new Headers(), abandon() {} } } as WebSocketSession
    return new Response(null, { status: accept ? 200 : 404 })
  }
}

function layerWith(policy: Partial<WebSocketPolicy>, accept = true) {
  const context = fakeContext('chat')
  const step = websocketLayer({ enabled: true, idleTimeoutMs: 1000, maxMessageBytes: 64, ...policy }, context)(upstream(accept))
  const open = () => context.gateway.states.of('websocket').get('chat')!().open
  return { step, open, context }
}

describe('[routes.websocket] config', () => {
  test('defaults: on, 5m idle timeout (Envoy), 16 MiB messages (Bun), no connection cap', () => {
    assert.deepEqual(policyOf('[routes.websocket]\n'), { enabled: true, idleTimeoutMs: 300_000, maxMessageBytes: 16 * 1024 * 1024 })
    assert.deepEqual(policyOf('[routes.websocket]\nenabled = false\nidle_timeout = "30s"\nmax_message = "1mb"\nmax_connections = 100\n'), {
      enabled: false,
      idleTimeoutMs: 30_000,
      maxMessageBytes: 1024 * 1024,
      maxConnections: 100,
    })
  })

  test('bad values name their key', () => {
    assert.deepEqual(problemLines(`${ONE_ROUTE}[routes.websocket]\nmax_connections = 0\nmax_message = "big"\nenable = false\n`), [
      'routes[0].websocket.max_message: expected a size like "512b", "64kb" or "1mb", got "big"',
      'routes[0].websocket.max_connections: expected a whole number of at least 1, got 0',
      'routes[0].websocket.enable: unknown key "enable" (allowed: enabled, idle_timeout, max_message, max_connections)',
    ])
  })
})

describe('websocket layer', () => {
  test('passes requests that are not handshakes untouched', async () => {
    const { step, open } = layerWith({ enabled: false, maxConnections: 1 })
    const exchange = exchangeFor('http://gw/chat')
    assert.equal((await step(exchange)).status, 200)
    assert.equal(exchange.websocket, undefined)
    assert.equal(open(), 0)
  })

  test('refuses a handshake with 403 websocket_disabled when turned off', async () => {
    const { step } = layerWith({ enabled: false })
    await assert.rejects(step(handshake()), (error) => error instanceof GatewayError && error.code === 'websocket_disabled' && error.status === 403)
  })

  test('holds a slot from the handshake until the connection closes, and refuses beyond max_connections', async () => {
    const { step, open, context } = layerWith({ maxConnections: 1 })
    const closes = record(context.events, 'websocket_closed')
    const first = handshake()
    await step(first)
    assert.equal(open(), 1)
    await assert.rejects(step(handshake()), (error) => error instanceof GatewayError && error.code === 'too_many_connections' && error.status === 503)
    first.websocket!.closed(CLOSED)
    first.websocket!.closed(CLOSED)
    assert.equal(open(), 0, 'released once, however often told')
    assert.deepEqual(closes, [{ route: 'chat', requestId: first.requestId, durationMs: 0, ...CLOSED }], 'one websocket_closed event')
    await step(handshake())
    assert.equal(open(), 1)
  })

  test('frees the slot at once when the upstream refuses the handshake or a layer below fails', async () => {
    const refused = layerWith({ maxConnections: 1 }, false)
    await refused.step(handshake())
    assert.equal(refused.open(), 0)
    const context = fakeContext('chat')
    const failing = websocketLayer({ enabled: true, idleTimeoutMs: 0, maxMessageBytes: 64, maxConnections: 1 }, context)(() =>
      Promise.reject(new GatewayError('upstream_unavailable', 'down')),
    )
    await assert.rejects(failing(handshake()))
    assert.equal(context.gateway.states.of('websocket').get('chat')!().open, 0)
  })
})
