import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { Cancel } from '../../../src/core/cancel.ts'

describe('Cancel: an exchange cancellation that behaves as an AbortController signal', () => {
  test('listeners run once, in the order added; one added twice runs once; a removed one does not run', () => {
    const cancel = new Cancel()
    const ran: string[] = []
    const first = () => ran.push('first')
    const second = { handleEvent: () => ran.push('second') }
    const removed = () => ran.push('removed')
    cancel.addEventListener('abort', first)
    cancel.addEventListener('abort', second)
    cancel.addEventListener('abort', first)
    cancel.addEventListener('abort', removed, { once: true })
    cancel.removeEventListener('abort', removed)
    cancel.abort(new Error('why'))
    cancel.abort(new Error('again'))
    assert.deepEqual(ran, ['first', 'second'])
    assert.equal(cancel.aborted, true)
    assert.equal((cancel.reason as Error).message, 'why', 'the first reason stays')
  })

  test('the same as AbortController: a listener added after the abort never runs; the default reason is an AbortError', () => {
    const cancel = new Cancel()
    const controller = new AbortController()
    cancel.abort()
    controller.abort()
    let late = 0
    cancel.addEventListener('abort', () => late++)
    controller.signal.addEventListener('abort', () => late++)
    assert.equal(late, 0)
    assert.equal((cancel.reason as DOMException).name, (controller.signal.reason as DOMException).name)
  })

  test('signal: a real AbortSignal that follows it, made before or after the abort', () => {
    const before = new Cancel()
    const early = before.signal
    assert.ok(early instanceof AbortSignal)
    assert.equal(early.aborted, false)
    before.abort('gone')
    assert.equal(early.aborted, true)
    assert.equal(early.reason, 'gone')
    const after = new Cancel()
    after.abort('late')
    assert.equal(after.signal.reason, 'late')
    assert.equal(after.signal, after.signal, 'made once')
  })
})
