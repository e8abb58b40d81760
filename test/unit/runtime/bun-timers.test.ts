import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { bunTimers, idleTimeoutSeconds } from '../../../src/runtime/bun-timers.ts'

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

describe('Bun.serve keeps a header deadline itself where it can', () => {
  const serve = (headersTimeoutMs: number | undefined, requestTimeoutMs: number, required = false) => ({
    host: '0.0.0.0',
    port: 0,
    requestTimeoutMs,
    ...(headersTimeoutMs === undefined ? {} : { headersTimeoutMs }),
    ...(required ? { headersTimeoutRequired: true } : {}),
  })

  it('as its idle timeout, when routes are bounded and the deadline is between 10 s and 255 s', () => {
    assert.deepEqual(bunTimers(serve(60_000, 15_000, true)), { idleTimeout: 60 })
    assert.deepEqual(bunTimers(serve(10_000, 2_000, true)), { idleTimeout: 10 })
  })

  it('raising each request’s timer when a route may wait longer than the deadline, to 255 s for a route without a timeout', () => {
    assert.deepEqual(bunTimers(serve(60_000, 120_000, true)), { idleTimeout: 60, perRequest: 125 })
    assert.deepEqual(bunTimers(serve(60_000, 0, true)), { idleTimeout: 60, perRequest: 255 })
    assert.deepEqual(bunTimers(serve(60_000, 300_000, true)), { idleTimeout: 60, perRequest: 255 })
  })

  it('not at all where a listener requires one it cannot keep (a front must)', () => {
    assert.equal(bunTimers(serve(5_000, 15_000, true)), undefined)
    assert.equal(bunTimers(serve(300_000, 15_000, true)), undefined)
  })

  it('as well as it can where none is required, and not at all where there is none', () => {
    assert.deepEqual(bunTimers(serve(5_000, 15_000)), { idleTimeout: 20 })
    assert.deepEqual(bunTimers(serve(60_000, 0)), { idleTimeout: 0 })
    assert.deepEqual(bunTimers(serve(0, 15_000, true)), { idleTimeout: 20 })
    assert.deepEqual(bunTimers(serve(undefined, 15_000)), { idleTimeout: 20 })
  })
})
