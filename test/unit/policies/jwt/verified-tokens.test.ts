import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { VerifiedTokens } from '../../../../src/policies/jwt/verified-tokens.ts'

describe('verified token cache', () => {
  it('answers for a token until it expires, allowing for clock skew', () => {
    const cache = new VerifiedTokens()
    const payload = { sub: 'ada', exp: 100 }
    cache.remember('t', payload, 50_000, 1_000)
    assert.equal(cache.get('t', 100_999), payload)
    assert.equal(cache.get('t', 101_000), undefined, 'exp + skew has passed')
    assert.equal(cache.get('t', 50_000), undefined, 'an expired entry is gone for good')
  })

  it('never keeps a token longer than the maximum age, so a withdrawn key stops being honoured', () => {
    const cache = new VerifiedTokens(10, 60_000)
    cache.remember('no-exp', { sub: 'ada' }, 0, 0)
    assert.ok(cache.get('no-exp', 59_999))
    assert.equal(cache.get('no-exp', 60_000), undefined)
  })

  it('does not remember a token that has already expired', () => {
    const cache = new VerifiedTokens()
    cache.remember('old', { exp: 10 }, 20_000, 0)
    assert.equal(cache.size, 0)
  })

  it('holds at most maxEntries tokens, least recently used out first', () => {
    const cache = new VerifiedTokens(2)
    cache.remember('a', { exp: 1e9 }, 0, 0)
    cache.remember('b', { exp: 1e9 }, 0, 0)
    assert.ok(cache.get('a', 1))
    cache.remember('c', { exp: 1e9 }, 0, 0)
    assert.equal(cache.size, 2)
    assert.equal(cache.get('b', 1), undefined, 'b was the least recently used')
    assert.ok(cache.get('a', 1))
    assert.ok(cache.get('c', 1))
  })

  it('the token used last answers again at once, and the order of the rest stays least recently used', () => {
    const cache = new VerifiedTokens(3)
    for (const token of ['a', 'b', 'c']) cache.remember(token, { sub: token, exp: 1e9 }, 0, 0)
    const fresh = (text: string) => [...text].join('')
    assert.equal(cache.get(fresh('a'), 1)?.sub, 'a')
    assert.equal(cache.get(fresh('a'), 2)?.sub, 'a', 'asked again, as the same client does')
    cache.remember('d', { exp: 1e9 }, 3, 0)
    assert.equal(cache.get('b', 4), undefined, 'b, not a, was the least recently used')
    assert.ok(cache.get('c', 4))
    cache.remember('e', { exp: 1e9 }, 5, 0)
    assert.equal(cache.get('a', 6), undefined, 'a went once c, d and e were used after it')
  })

  it('the token used last expires like any other, and is gone once it is pushed out', () => {
    const cache = new VerifiedTokens(1)
    cache.remember('x', { exp: 10 }, 0, 0)
    assert.ok(cache.get('x', 9_999))
    assert.equal(cache.get('x', 10_000), undefined)
    assert.equal(cache.size, 0)
    cache.remember('y', { exp: 1e9 }, 0, 0)
    assert.ok(cache.get('y', 1))
    cache.remember('z', { exp: 1e9 }, 2, 0)
    assert.equal(cache.get('y', 3), undefined, 'the one entry allowed is z now')
    assert.ok(cache.get('z', 3))
  })
})
