import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { AccessLog } from '../../../src/observability/access-log.ts'
import type { RequestRecord } from '../../../src/observability/observer.ts'
import { Exchange } from '../../../src/proxy/exchange.ts'

const noWrites = { push() {} } as unknown as ConstructorParameters<typeof AccessLog>[1]

/** Every field whose value is a string the request or config supplies. */
const STRING_FIELDS = ['request_id', 'route', 'method', 'path', 'host', 'upstream', 'endpoint', 'user_agent', 'client', 'authz'] as const

function recordOf(text: Record<(typeof STRING_FIELDS)[number], string>): RequestRecord {
  const request = new Request('http://gw/x', { headers: { host: text.host, 'user-agent': text.user_agent } })
  const exchange = new Exchange(request, { remoteAddress: text.client }, text.request_id, text.path, '', 0)
  Object.assign(exchange, { route: text.route, upstream: text.upstream, endpoint: text.endpoint, authz: text.authz })
  return {
    requestId: text.request_id,
    route: text.route,
    method: text.method,
    path: text.path,
    status: 200,
    code: undefined,
    startedAt: 0,
    durationMs: 1,
    bytesOut: 0,
    clientAddress: text.client,
    exchange,
    request,
  }
}

test('a line is what JSON.stringify writes for any strings: quotes, backslashes, controls, lone surrogates, non-ASCII', () => {
  const log = new AccessLog({ to: 'stdout', fields: [...STRING_FIELDS] }, noWrites)
  const text = fc.oneof(fc.string({ unit: 'binary', minLength: 1 }), fc.string({ minLength: 1 }), fc.constantFrom('GET', '/api/items', 'a"b', 'c\\d', '\u2028', '\ud800'))
  // A header value is visible Latin-1 with spaces inside, never at its ends (RFC 9110 §5.5).
  const headerValue = fc.stringMatching(/^[\x21-\x7e\xa0-\xff]([\x20-\x7e\xa0-\xff]*[\x21-\x7e\xa0-\xff])?$/)
  const arbitraries = Object.fromEntries(STRING_FIELDS.map((field) => [field, field === 'host' || field === 'user_agent' ? headerValue : text]))
  fc.assert(
    fc.property(fc.record(arbitraries as Record<(typeof STRING_FIELDS)[number], fc.Arbitrary<string>>), (fields) => {
      const expected = Object.fromEntries(STRING_FIELDS.map((field) => [field, fields[field]]))
      assert.equal(log.format(recordOf(fields)), JSON.stringify(expected))
    }),
    { numRuns: 2000 },
  )
})
