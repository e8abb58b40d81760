import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { peerNamesCheck, toAllowedSan } from '../../../src/listener/client-names.ts'

function normalized(entries: string[]): string[] {
  return entries.map((entry) => {
    const converted = toAllowedSan(entry)
    assert.ok('value' in converted, `${entry}: ${JSON.stringify(converted)}`)
    return converted.value
  })
}

function allowed(...entries: string[]) {
  const check = peerNamesCheck(normalized(entries))
  return (names: string[]) => check(names, '10.0.0.9')
}

describe('allowed_sans', () => {
  it('a SPIFFE ID matches that URI SAN exactly', () => {
    const check = allowed('spiffe://cluster.local/ns/shop/sa/checkout')
    assert.equal(check(['URI:spiffe://cluster.local/ns/shop/sa/checkout']), true)
    assert.equal(check(['URI:SPIFFE://cluster.local/ns/shop/sa/checkout']), true, 'the scheme is case-insensitive')
    assert.equal(check(['URI:spiffe://cluster.local/ns/shop/sa/checkout2']), false)
    assert.equal(check(['URI:spiffe://cluster.local/ns/shop/sa/Checkout']), false, 'the path is not')
    assert.equal(check(['DNS:spiffe://cluster.local/ns/shop/sa/checkout']), false, 'a DNS SAN is not a URI SAN')
    assert.equal(check([]), false)
  })

  it('a URI ending in /* allows what lies under that path', () => {
    const check = allowed('spiffe://cluster.local/ns/shop/*')
    assert.equal(check(['URI:spiffe://cluster.local/ns/shop/sa/checkout']), true)
    assert.equal(check(['URI:spiffe://cluster.local/ns/shop/']), false)
    assert.equal(check(['URI:spiffe://cluster.local/ns/shopping/sa/x']), false)
  })

  it('DNS names match without regard to case; "*." matches exactly one label', () => {
    const check = allowed('checkout.internal', '*.shop.internal')
    assert.equal(check(['DNS:Checkout.Internal']), true)
    assert.equal(check(['DNS:cart.shop.internal']), true)
    assert.equal(check(['DNS:shop.internal']), false)
    assert.equal(check(['DNS:a.cart.shop.internal']), false)
    assert.equal(check(['IP Address:10.0.0.7', 'DNS:other.internal']), false)
    assert.equal(check(['DNS:other.internal', 'DNS:checkout.internal']), true, 'any one allowed name is enough')
  })

  it('tells who was refused, and with which names', () => {
    const refused: Array<[readonly string[], string]> = []
    const check = peerNamesCheck(normalized(['checkout.internal']), (names, address) => refused.push([names, address]))
    assert.equal(check(['DNS:checkout.internal'], '10.0.0.8'), true)
    assert.equal(check(['DNS:intruder.internal'], '10.0.0.9'), false)
    assert.deepEqual(refused, [[['DNS:intruder.internal'], '10.0.0.9']])
  })

  it('refuses entries that are neither a DNS name nor a URI', () => {
    for (const bad of ['', 'spiffe://', 'spiffe://a/b*', 'a b', 'foo.*.internal', '10.0.0.7:8443']) {
      assert.ok('problem' in toAllowedSan(bad), bad)
    }
  })
})
