import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { encodeGrpcMessage, GRPC_STATUS_OF, grpcErrorResponse, isGrpcRequest, isGrpcServerFailure } from '../../../src/core/grpc.ts'
import { GatewayError } from '../../../src/core/errors.ts'
import { compileConditions } from '../../../src/policies/shared/conditions.ts'
import { grpcTimeoutMs } from '../../../src/policies/timeout/index.ts'
import { carryTrailers, trailersOf, withTrailers } from '../../../src/core/trailers.ts'

describe('gateway errors for gRPC clients', () => {
  test('map to the grpc-status codes issue 13 names', () => {
    const expected = {
      circuit_open: 14,
      bulkhead_full: 14,
      upstream_unavailable: 14,
      rate_limited: 8,
      upstream_timeout: 4,
      no_route: 12,
      unauthorized: 16,
      forbidden: 7,
      body_too_large: 8,
    }
    for (const [code, status] of Object.entries(expected)) assert.equal(GRPC_STATUS_OF[code as keyof typeof GRPC_STATUS_OF], status, code)
  })

  test('are trailers-only: HTTP 200, no body, grpc-status and an encoded grpc-message in the headers', async () => {
    const response = grpcErrorResponse('circuit_open', 'the circuit is open: 100% café', 'req-1', { 'retry-after': '5' })
    assert.equal(response.status, 200)
    assert.equal(response.body, null)
    assert.equal(response.headers.get('content-type'), 'application/grpc')
    assert.equal(response.headers.get('grpc-status'), '14')
    assert.equal(response.headers.get('grpc-message'), 'the circuit is open: 100%25 caf%C3%A9')
    assert.equal(response.headers.get('x-pillion-error'), 'circuit_open')
    assert.equal(response.headers.get('x-request-id'), 'req-1')
    assert.equal(response.headers.get('retry-after'), '5')
  })

  test('are chosen by the request’s content type', () => {
    assert.equal(isGrpcRequest(new Headers({ 'content-type': 'application/grpc' })), true)
    assert.equal(isGrpcRequest(new Headers({ 'content-type': 'application/grpc+proto' })), true)
    assert.equal(isGrpcRequest(new Headers({ 'content-type': 'application/json' })), false)
    assert.equal(isGrpcRequest(new Headers()), false)
  })

  test('grpc-message leaves printable ASCII alone', () => {
    assert.equal(encodeGrpcMessage('no route for POST /a.B/C'), 'no route for POST /a.B/C')
    assert.equal(encodeGrpcMessage('line\nbreak'), 'line%0Abreak')
  })
})

describe('grpc-timeout', () => {
  test('reads every unit', () => {
    assert.equal(grpcTimeoutMs('2H'), 7_200_000)
    assert.equal(grpcTimeoutMs('3M'), 180_000)
    assert.equal(grpcTimeoutMs('5S'), 5000)
    assert.equal(grpcTimeoutMs('250m'), 250)
    assert.equal(grpcTimeoutMs('1500u'), 1.5)
    assert.equal(grpcTimeoutMs('2000000n'), 2)
  })

  test('ignores malformed values (more than 8 digits, no unit, a sign)', () => {
    for (const value of ['123456789m', '100', '-5S', '5 S', 'm', '']) assert.equal(grpcTimeoutMs(value), undefined, value)
  })
})

describe('trailers beside a Response', () => {
  test('are found on the response they were attached to and carried to a rebuilt one', async () => {
    const original = withTrailers(new Response('body'), Promise.resolve(new Headers({ 'grpc-status': '0' })))
    const rebuilt = carryTrailers(original, new Response(original.body, original))
    assert.equal((await trailersOf(rebuilt)!).get('grpc-status'), '0')
    assert.equal(trailersOf(new Response('plain')), undefined)
    assert.equal(trailersOf(carryTrailers(new Response('plain'), new Response('other'))), undefined)
  })
})

describe('gRPC failure conditions (retry on, circuit_breaker failures)', () => {
  const trailersOnly = (status: string) => new Response(null, { status: 200, headers: { 'content-type': 'application/grpc', 'grpc-status': status } })

  test('match a trailers-only answer by its grpc-status name', () => {
    const matches = compileConditions(['unavailable', 'deadline-exceeded'])
    assert.equal(matches({ status: 200, response: trailersOnly('14') }), true)
    assert.equal(matches({ status: 200, response: trailersOnly('4') }), true)
    assert.equal(matches({ status: 200, response: trailersOnly('13') }), false)
    assert.equal(matches({ status: 200, response: new Response('ok') }), false)
    assert.equal(matches({ status: 200 }), false)
  })

  test('keep the HTTP conditions beside them', () => {
    const matches = compileConditions(['internal', 'gateway-error'])
    assert.equal(matches({ status: 503 }), true)
    assert.equal(matches({ error: new GatewayError('upstream_unavailable', 'x', { failure: 'reset' }) }), true)
    assert.equal(matches({ status: 200, response: trailersOnly('13') }), true)
  })

  test('an HTTP/2 answer whose grpc-status maps to a 5xx counts against its endpoint', () => {
    for (const status of ['2', '4', '12', '13', '14', '15']) assert.equal(isGrpcServerFailure(new Headers({ 'grpc-status': status })), true, status)
    for (const status of ['0', '1', '3', '5', '8', '16']) assert.equal(isGrpcServerFailure(new Headers({ 'grpc-status': status })), false, status)
    assert.equal(isGrpcServerFailure(new Headers()), false)
  })
})
