import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import { LineBytes } from '../../../src/observability/line-bytes.ts'

const decoded = (bytes: Uint8Array) => new TextDecoder().decode(bytes)
const utf8Length = (text: string) => new TextEncoder().encode(text).byteLength

describe('line bytes', () => {
  test('lines come out as UTF-8, each with its newline, in order; take empties the buffer', () => {
    const buffer = new LineBytes(64)
    assert.equal(buffer.append('{"a":1}', 1000), true)
    assert.equal(buffer.append('é € 😀', 1000), true)
    assert.equal(buffer.lines, 2)
    assert.equal(buffer.bytes, 8 + utf8Length('é € 😀') + 1)
    assert.equal(decoded(buffer.take()), '{"a":1}\né € 😀\n')
    assert.equal(buffer.lines, 0)
    assert.equal(buffer.bytes, 0)
    assert.equal(buffer.take().byteLength, 0)
  })

  test('lines longer than a chunk and lines that span chunks are kept whole', () => {
    const buffer = new LineBytes(16)
    const lines = ['0123456789', 'abcdefghij', 'x'.repeat(100), '€'.repeat(20), 'end']
    for (const line of lines) assert.equal(buffer.append(line, 10_000), true)
    assert.equal(decoded(buffer.take()), `${lines.join('\n')}\n`)
  })

  test('a line that would take the bytes past the cap is refused and leaves nothing behind', () => {
    const buffer = new LineBytes(64)
    assert.equal(buffer.append('12345', 12), true)
    assert.equal(buffer.append('12345', 12), true)
    assert.equal(buffer.append('1', 12), false)
    assert.equal(buffer.lines, 2)
    assert.equal(decoded(buffer.take()), '12345\n12345\n')
  })

  test('lines given as bytes are copied in, under the same cap, whole even when longer than a chunk', () => {
    const buffer = new LineBytes(16)
    const scratch = new TextEncoder().encode(`{"a":"${'y'.repeat(40)}"}and more`)
    const length = scratch.byteLength - 'and more'.length
    assert.equal(buffer.append('first', 1000), true)
    assert.equal(buffer.appendBytes(scratch, length, 1000), true)
    assert.equal(buffer.appendBytes(scratch, 3, 1000), true)
    assert.equal(buffer.appendBytes(scratch, length, 60), false)
    assert.equal(buffer.lines, 3)
    assert.equal(decoded(buffer.take()), `first\n{"a":"${'y'.repeat(40)}"}\n{"a\n`)
  })

  test('property: whatever the lines, chunk size and cap, what comes out is the lines admitted, as UTF-8', () => {
    fc.assert(
      fc.property(
        fc.array(fc.string({ unit: 'binary', maxLength: 40 }), { maxLength: 40 }),
        fc.integer({ min: 1, max: 64 }),
        fc.integer({ min: 1, max: 2000 }),
        (lines, chunkBytes, maxBytes) => {
          const buffer = new LineBytes(chunkBytes)
          const admitted: string[] = []
          let bytes = 0
          for (const line of lines) {
            const size = utf8Length(line) + 1
            const fits = bytes + size <= maxBytes
            assert.equal(buffer.append(line, maxBytes), fits)
            if (fits) {
              admitted.push(line)
              bytes += size
            }
          }
          assert.equal(buffer.bytes, bytes)
          assert.equal(buffer.lines, admitted.length)
          const expected = new TextEncoder().encode(admitted.map((line) => `${line}\n`).join(''))
          assert.deepEqual(buffer.take(), expected)
        },
      ),
      { numRuns: 500 },
    )
  })
})
