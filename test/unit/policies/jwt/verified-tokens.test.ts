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
})
