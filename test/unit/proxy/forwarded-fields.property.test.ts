import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { fieldOverrides, ForwardedFields, upstreamRequestHeaders, type ForwardedFor } from '../../../src/proxy/headers.ts'
import type { UpstreamHeaderEdit } from '../../../src/proxy/exchange.ts'

/** Names a client may send, among them every one the forwarder drops, replaces or reads. */
const NAMES = [
  'host', 'connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect', 'proxy-authorization', 'proxy-connection',
  'via', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-request-id', 'cookie', 'set-cookie', 'content-length',
  'accept', 'authorization', 'a', 'x-a', 'x-z', 'zz', 'x-forwarded-fo', 'x-forwarded-forx', 'w', 'X-Mixed-Case',
]
const name = fc.oneof(fc.constantFrom(...NAMES), fc.stringMatching(/^[a-z][a-z0-9-]{0,12}$/))
const token = fc.oneof(fc.constantFrom(...NAMES), fc.constantFrom('close', 'keep-alive', ' X-A ', 'bad token', ''))
const value = (of: string) =>
  of === 'connection' ? fc.array(token, { maxLength: 4 }).map((parts) => parts.join(',')) : fc.stringMatching(/^[!-~]([ !-~]{0,10}[!-~])?$/)
const field = name.chain((n) => value(n.toLowerCase()).map((v) => [n, v] as const))
const forwarded: fc.Arbitrary<ForwardedFor> = fc.record({
  clientAddress: fc.constantFrom('127.0.0.1', '::1', '10.1.2.3'),
  proto: fc.constantFrom('http', 'https'),
  host: fc.option(fc.constantFrom('gw.local', 'a.test:8080'), { nil: null }),
  requestId: fc.uuid(),
})

function fieldsOf(headers: { forEach(visit: (value: string, name: string) => void): void }): string[][] {
  const seen: string[][] = []
  headers.forEach((value, name) => seen.push([name, value]))
  return seen
}

describe('ForwardedFields', () => {
  it('gives the same fields, in the same order, as the Headers upstreamRequestHeaders builds', () => {
    fc.assert(
      fc.property(fc.array(field, { maxLength: 12 }), forwarded, (fields, forwardedFor) => {
        const incoming = new Headers()
        for (const [n, v] of fields) incoming.append(n, v)
        const expected = upstreamRequestHeaders(incoming, forwardedFor)
        const ours = new ForwardedFields(incoming, forwardedFor)
        assert.deepEqual(fieldsOf(ours), fieldsOf(expected))
        assert.deepEqual(fieldsOf(ours), [...expected].map(([n, v]) => [n, v]))
        for (const asked of [...NAMES, 'HOST', 'Via', 'X-Forwarded-For']) assert.equal(ours.get(asked), expected.get(asked), asked)
        assert.deepEqual([...ours.toHeaders()], [...expected])
      }),
      { numRuns: 2000 },
    )
  })

  it('with the layers’ edits, gives what applying them one by one to that Headers gives; edits it cannot apply as they are are left to Headers', () => {
    const editValue = fc.oneof(fc.stringMatching(/^[!-~]([ !-~]{0,10}[!-~])?$/), fc.constantFrom('', ' padded ', 'caf\u00e9', 'a\u0100b', 'a\tb', 'nb\u00a0', 'via'))
    const edit: fc.Arbitrary<UpstreamHeaderEdit> = fc.tuple(
      fc.oneof(fc.constantFrom(...NAMES), fc.stringMatching(/^[a-z][a-z0-9-]{0,12}$/)),
      fc.option(editValue, { nil: null }),
      fc.constantFrom(undefined, undefined, undefined, 'append' as const),
    ).map(([n, v, mode]) => (mode === undefined || v === null ? [n, v] : [n, v, mode]))
    fc.assert(
      fc.property(fc.array(field, { maxLength: 10 }), forwarded, fc.array(edit, { minLength: 1, maxLength: 5 }), (fields, forwardedFor, edits) => {
        const incoming = new Headers()
        for (const [n, v] of fields) incoming.append(n, v)
        const expected = upstreamRequestHeaders(incoming, forwardedFor)
        let refused = false
        try {
          for (const [n, v, mode] of edits) v === null ? expected.delete(n) : mode === 'append' ? expected.append(n, v) : expected.set(n, v)
        } catch {
          refused = true
        }
        const overrides = fieldOverrides(edits)
        const asIs = edits.every(([n, v, mode]) => mode === undefined && n === n.toLowerCase() && (v === null || (n !== 'set-cookie' && !/^[\t\n\r ]|[\t\n\r ]$|[^\x00-\xff]/.test(v))))
        assert.equal(overrides !== undefined, asIs, 'taken exactly when every edit is a set or a removal Headers keeps as it is')
        if (overrides === undefined) return
        assert.equal(refused, false)
        const ours = new ForwardedFields(incoming, forwardedFor, overrides)
        assert.deepEqual(fieldsOf(ours), fieldsOf(expected))
        for (const asked of [...NAMES, ...edits.map(([n]) => n)]) assert.equal(ours.get(asked), expected.get(asked), asked)
        assert.deepEqual([...ours.toHeaders()], [...expected])
      }),
      { numRuns: 2000 },
    )
  })

  it('refuses a name Headers would refuse', () => {
    const ours = new ForwardedFields(new Headers({ a: '1' }), { clientAddress: '127.0.0.1', proto: 'http', host: null, requestId: 'r' })
    assert.throws(() => ours.get('bad name'), TypeError)
  })
})
