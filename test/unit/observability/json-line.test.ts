import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import { asciiBytes, JsonLine } from '../../../src/observability/json-line.ts'

/** What the line holds after `write`, as text. */
function written(write: (line: JsonLine) => void, line = new JsonLine()): string {
  line.start()
  write(line)
  return line.text()
}

describe('JSON line', () => {
  test('strings come out as JSON.stringify writes them: plain ASCII as it is, the rest escaped and UTF-8', () => {
    for (const value of ['', 'route-0', 'a"b', 'back\\slash', 'tab\there', 'é € 😀', '\u0000\u001f\u007f', '\ud800 lone']) {
      assert.equal(written((line) => line.string(value)), JSON.stringify(value))
    }
  })

  test('numbers as JSON writes them; what JSON cannot hold is null', () => {
    for (const value of [0, -0, 7, 200, 2 ** 31 - 1, 2 ** 31, 2 ** 53, -5, 1.5, 1e21, 1e-7, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.equal(written((line) => line.number(value)), JSON.stringify(value))
    }
  })

  test('millis3 is String(Math.round(ms * 1000) / 1000): trailing zeros dropped, whole numbers without a point', () => {
    const cases: Array<[number, string]> = [[4.60612, '4.606'], [4.48, '4.48'], [4.1, '4.1'], [12, '12'], [0.0004, '0'], [0.0005, '0.001'], [0.05, '0.05'], [1234567.8904, '1234567.89'], [3e6 + 0.25, '3000000.25']]
    for (const [ms, text] of cases) assert.equal(written((line) => line.millis3(ms)), text)
  })

  test('timestamp is a Date as JSON.stringify writes it, across seconds and back again', () => {
    const line = new JsonLine()
    for (const ms of [Date.UTC(2030, 0, 2, 3, 4, 5, 6), Date.UTC(2030, 0, 2, 3, 4, 5, 999.9), Date.UTC(2030, 0, 2, 3, 4, 6, 0), Date.UTC(2030, 0, 2, 3, 4, 5, 60)]) {
      assert.equal(written((l) => l.timestamp(ms), line), JSON.stringify(new Date(Math.floor(ms))))
    }
    assert.equal(written((l) => l.timestamp(Number.NaN), line), 'null')
  })

  test('a line longer than the buffer grows it and keeps what was written', () => {
    const long = 'x'.repeat(5000)
    const text = written((line) => {
      line.raw(asciiBytes('{"a":'))
      line.string(long)
      line.raw(asciiBytes(',"b":'))
      line.string(`${long}é`)
      line.raw(asciiBytes('}'))
    })
    assert.deepEqual(JSON.parse(text), { a: long, b: `${long}é` })
  })

  test('property: any object of strings and numbers is written as JSON.stringify writes it', () => {
    const value = fc.oneof(fc.string({ unit: 'binary', maxLength: 30 }), fc.double(), fc.integer())
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 8 }), value, { maxKeys: 8 }), (object) => {
        const line = new JsonLine()
        line.start()
        for (const [key, field] of Object.entries(object)) {
          line.raw(new TextEncoder().encode(`${line.empty ? '{' : ','}${JSON.stringify(key)}:`))
          if (typeof field === 'string') line.string(field)
          else line.number(field)
        }
        line.raw(asciiBytes(line.empty ? '{}' : '}'))
        assert.equal(line.text(), JSON.stringify(object))
      }),
      { numRuns: 500 },
    )
  })

  test('property: millis3 agrees with String(Math.round(ms * 1000) / 1000)', () => {
    fc.assert(
      fc.property(fc.double({ min: 0, max: 2e6, noNaN: true }), (ms) => {
        assert.equal(written((line) => line.millis3(ms)), String(Math.round(ms * 1000) / 1000))
      }),
      { numRuns: 2000 },
    )
  })
})
