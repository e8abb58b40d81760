import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { StateCarrier } from '../../../src/core/state-carrier.ts'

describe('state carried across reloads', () => {
  it('keeps a part whose key and config are unchanged, and remakes one whose config changed', () => {
    const carrier = new StateCarrier()
    carrier.begin()
    const a = carrier.keep('breaker:api', { rate: 0.5 }, () => ({ name: 'a' }))
    const b = carrier.keep('breaker:pay', { rate: 0.5 }, () => ({ name: 'b' }))
    assert.deepEqual(carrier.commit(), { created: [['breaker:api', a], ['breaker:pay', b]], dropped: [] })

    carrier.begin()
    const a2 = carrier.keep('breaker:api', { rate: 0.5 }, () => ({ name: 'a2' }))
    const b2 = carrier.keep('breaker:pay', { rate: 0.9 }, () => ({ name: 'b2' }))
    assert.equal(a2, a)
    assert.notEqual(b2, b)
    assert.deepEqual(carrier.commit(), { created: [['breaker:pay', b2]], dropped: [['breaker:pay', b]] })
  })

  it('drops parts the new config no longer uses', () => {
    const carrier = new StateCarrier()
    carrier.begin()
    const gone = carrier.keep('upstream:old', {}, () => 'old')
    carrier.commit()
    carrier.begin()
    carrier.keep('upstream:new', {}, () => 'new')
    assert.deepEqual(carrier.commit(), { created: [['upstream:new', 'new']], dropped: [['upstream:old', gone]] })
  })

  it('an abandoned generation changes nothing and hands back only what it made', () => {
    const carrier = new StateCarrier()
    carrier.begin()
    const kept = carrier.keep('k', 1, () => 'first')
    carrier.commit()
    carrier.begin()
    carrier.keep('k', 1, () => 'unused')
    carrier.keep('other', 1, () => 'made')
    assert.deepEqual(carrier.abort(), [['other', 'made']])
    carrier.begin()
    assert.equal(carrier.keep('k', 1, () => 'again'), kept)
  })

  it('a key asked twice in one generation gives the same part', () => {
    const carrier = new StateCarrier()
    carrier.begin()
    let made = 0
    carrier.keep('x', 1, () => ++made)
    carrier.keep('x', 1, () => ++made)
    assert.equal(made, 1)
  })
})
