import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { loadConfigText } from '../../../../src/config/load.ts'
import { GatewayError } from '../../../../src/core/errors.ts'
import { headerBytes, limitsLayer } from '../../../../src/policies/limits/index.ts'
import type { Exchange } from '../../../../src/proxy/exchange.ts'
import { ONE_ROUTE, problemLines } from '../../fakes/policy-text.ts'
import { echoStep, exchangeFor, fakeContext, record } from '../../fakes/security-fakes.ts'
import type { LimitsPolicy } from '../../../../src/policies/limits/index.ts'

const POLICY: LimitsPolicy = { maxBodyBytes: 10, maxHeaderBytes: 200, maxUrlLength: 30, clientTimeoutMs: 0, methods: ['GET', 'POST'] }

function chunks(...parts: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder()
  return new ReadableStream({
    pull(controller) {
      const next = parts.shift()
      if (next === undefined) controller.close()
      else controller.enqueue(encoder.encode(next))
    },
  })
}

async function outcome(exchange: Exchange, policy: Partial<LimitsPolicy> = {}) {
  const context = fakeContext()
  const rejects = record(context.events, 'limit_reject')
  const next = echoStep()
  try {
    const response = await limitsLayer({ ...POLICY, ...policy }, context)(next)(exchange)
    return { status: response.status, body: await response.json(), rejects, calls: next.calls.length }
  } catch (error) {
    assert.ok(error instanceof GatewayError, String(error))
    return { status: error.status, error, rejects, calls: next.calls.length }
  }
}

describe('limits config', () => {
  test('limits = {} turns every limit on with its default', () => {
    const config = loadConfigText(`${ONE_ROUTE}\nlimits = {}\n`, 'x.toml')
    assert.deepEqual(config.routes[0]!.policies.limits, { maxBodyBytes: 1 << 20, maxHeaderBytes: 16 << 10, maxUrlLength: 8 << 10, clientTimeoutMs: 60_000 })
  })

  test('values and methods', () => {
    const config = loadConfigText(`${ONE_ROUTE}\n[routes.limits]\nmax_body = "64kb"\nmethods = ["get", "POST", "GET"]\nclient_timeout = "0s"\n`, 'x.toml')
    assert.deepEqual(config.routes[0]!.policies.limits, { maxBodyBytes: 65536, maxHeaderBytes: 16384, maxUrlLength: 8192, clientTimeoutMs: 0, methods: ['GET', 'POST'] })
    assert.match(problemLines(`${ONE_ROUTE}\n[routes.limits]\nmax_body = "lots"\n`)[0]!, /^routes\[0\]\.limits\.max_body: expected a size/)
    assert.match(problemLines(`${ONE_ROUTE}\n[routes.limits]\nmethods = []\n`)[0]!, /^routes\[0\]\.limits\.methods: expected at least one method/)
  })
})

describe('limits layer', () => {
  test('a request within every limit passes, its body streamed through', async () => {
    const result = await outcome(exchangeFor('http://gw/x', { method: 'POST', body: chunks('hello', 'there') }))
    assert.equal(result.status, 200)
    assert.equal(result.body.bytes, 10)
  })

  test('a method not listed gets 405 with Allow; so does a method override naming one', async () => {
    const put = await outcome(exchangeFor('http://gw/x', { method: 'PUT' }))
    assert.equal(put.status, 405)
    assert.equal(put.error!.code, 'method_not_allowed')
    assert.deepEqual(put.error!.headers, { allow: 'GET, POST' })
    const override = await outcome(exchangeFor('http://gw/x', { method: 'POST', headers: { 'x-http-method-override': 'delete' } }))
    assert.equal(override.status, 405)
    assert.match(override.error!.message, /DELETE \(by x-http-method-override\)/)
    assert.deepEqual(put.rejects, [{ route: 'r', limit: 'method' }])
  })

  test('a long URL gets 414; large headers get 431', async () => {
    assert.equal((await outcome(exchangeFor(`http://gw/${'a'.repeat(20)}?q=${'b'.repeat(10)}`))).status, 414)
    assert.equal((await outcome(exchangeFor(`http://gw/${'a'.repeat(20)}`))).status, 200)
    assert.equal((await outcome(exchangeFor('http://gw/x', { headers: { 'x-big': 'v'.repeat(200) } }))).status, 431)
    assert.equal(headerBytes(new Headers({ ab: 'cd' })), 8)
  })

  test('a Content-Length over max_body is refused before a byte is read', async () => {
    const exchange = exchangeFor('http://gw/x', { method: 'POST', body: 'x'.repeat(11), headers: { 'content-length': '11' } })
    const result = await outcome(exchange)
    assert.equal(result.status, 413)
    assert.equal(result.calls, 0)
    assert.equal(exchange.request.bodyUsed, false)
  })

  test('a chunked body is cut at max_body + 1 bytes: 413, and the exchange is aborted with it', async () => {
    const exchange = exchangeFor('http://gw/x', { method: 'POST', body: chunks('12345', '67890', '1', 'never read') })
    const result = await outcome(exchange)
    assert.equal(result.status, 413)
    assert.equal(result.error!.code, 'body_too_large')
    assert.equal((exchange.signal.reason as GatewayError).code, 'body_too_large')
    assert.deepEqual(result.rejects, [{ route: 'r', limit: 'body' }])
  })

  test('a body that never finishes arriving is cut at client_timeout with 408', async () => {
    const stalled = new ReadableStream<Uint8Array>({ start: (c) => c.enqueue(new Uint8Array(1)), pull: () => new Promise(() => {}) })
    const exchange = exchangeFor('http://gw/x', { method: 'POST', body: stalled })
    const context = fakeContext()
    // The forwarder would fail with the exchange's abort reason; this one does exactly that.
    const upstream = (e: Exchange) =>
      new Promise<Response>((_, reject) => {
        void (e.body as ReadableStream).getReader().read()
        e.signal.addEventListener('abort', () => reject(e.signal.reason))
      })
    await assert.rejects(limitsLayer({ ...POLICY, clientTimeoutMs: 1 }, context)(upstream)(exchange), { code: 'request_timeout', status: 408 })
  })
})
