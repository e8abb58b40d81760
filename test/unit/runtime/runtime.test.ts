import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { idleTimeoutSeconds } from '../../../src/runtime/bun.ts'

describe("Bun's idle timeout never cuts a request a route still allows", () => {
  it('sits above the longest route timeout, at least Bun’s own 10 s', () => {
    assert.equal(idleTimeoutSeconds(2_000), 10)
    assert.equal(idleTimeoutSeconds(15_000), 20)
    assert.equal(idleTimeoutSeconds(120_000), 125)
  })
  it('is off when a route has no timeout or needs more than Bun’s 255 s maximum', () => {
    assert.equal(idleTimeoutSeconds(0), 0)
    assert.equal(idleTimeoutSeconds(300_000), 0)
  })
})
