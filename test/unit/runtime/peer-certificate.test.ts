import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { subjectAltNames } from '../../../src/runtime/peer-certificate.ts'

describe("node:tls's subjectaltname text", () => {
  it('splits into typed names', () => {
    assert.deepEqual(subjectAltNames('URI:spiffe://cluster.local/ns/x/sa/y, DNS:egress.internal, IP Address:127.0.0.1'), [
      'URI:spiffe://cluster.local/ns/x/sa/y',
      'DNS:egress.internal',
      'IP Address:127.0.0.1',
    ])
    assert.deepEqual(subjectAltNames(undefined), [])
    assert.deepEqual(subjectAltNames(''), [])
  })

  it('a quoted value with a comma stays one name and cannot pose as an allowed one', () => {
    assert.deepEqual(subjectAltNames('DNS:"evil.example, DNS:checkout.internal", URI:spiffe://a/b'), ['DNS:evil.example, DNS:checkout.internal', 'URI:spiffe://a/b'])
  })
})
