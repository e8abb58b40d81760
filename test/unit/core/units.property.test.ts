import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import * as v from 'valibot'
import { DURATION_HINT, duration, parseDuration, parseRate, parseSize, rate, size } from '../../../src/core/units.ts'

const MS_PER_UNIT = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const
const BYTES_PER_UNIT = { b: 1, kb: 1024, kib: 1024, mb: 1024 ** 2, mib: 1024 ** 2, gb: 1024 ** 3, gib: 1024 ** 3 } as const
const SECONDS_PER_UNIT = { s: 1, sec: 1, second: 1, m: 60, min: 60, minute: 60, h: 3600, hr: 3600, hour: 3600, d: 86_400, day: 86_400 } as const

const durationPart = fc.record({ amount: fc.nat({ max: 10_000 }), unit: fc.constantFrom(...(Object.keys(MS_PER_UNIT) as Array<keyof typeof MS_PER_UNIT>)) })

/** Any letters, digits, units, dots, spaces and slashes: mostly near-misses of a valid value. */
const unitText = fc.string({ unit: fc.constantFrom(...'0123456789.msh kbigKBMGdaycenorut/-+e_'.split('')), maxLength: 14 })

/** The pattern the JSON Schema gives editors, as a RegExp (JSON Schema patterns have no flags). */
function schemaPattern(schema: v.GenericSchema): RegExp {
  const pattern = JSON.stringify(schema).match(/"pattern":"((?:[^"\\]|\\.)*)"/)?.[1]
  assert.ok(pattern !== undefined, 'the schema carries a pattern for editors')
  return new RegExp(JSON.parse(`"${pattern}"`))
}

describe('unit parsing, by property', () => {
  test('a duration written as parts is the sum of its parts, in whole milliseconds', () => {
    fc.assert(
      fc.property(fc.array(durationPart, { minLength: 1, maxLength: 4 }), (parts) => {
        const text = parts.map(({ amount, unit }) => `${amount}${unit}`).join('')
        const expected = parts.reduce((sum, { amount, unit }) => sum + amount * MS_PER_UNIT[unit], 0)
        assert.equal(parseDuration(text), expected)
      }),
    )
  })

  test('a size and a rate parse to their amount times the unit, in any case and with spaces before the unit', () => {
    fc.assert(
      fc.property(fc.nat({ max: 1_000_000 }), fc.constantFrom(...Object.keys(BYTES_PER_UNIT)), fc.boolean(), fc.boolean(), (amount, unit, upper, spaced) => {
        const text = `${amount}${spaced ? ' ' : ''}${upper ? unit.toUpperCase() : unit}`
        assert.equal(parseSize(text), amount * BYTES_PER_UNIT[unit as keyof typeof BYTES_PER_UNIT])
      }),
    )
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1_000_000 }), fc.constantFrom(...Object.keys(SECONDS_PER_UNIT)), (count, unit) => {
        assert.equal(parseRate(`${count}/${unit}`), count / SECONDS_PER_UNIT[unit as keyof typeof SECONDS_PER_UNIT])
        assert.equal(parseRate(`${count} / ${unit.toUpperCase()}`), parseRate(`${count}/${unit}`))
      }),
    )
  })

  test('any text parses to a finite non-negative number or to nothing, and never throws', () => {
    fc.assert(
      fc.property(fc.oneof(unitText, fc.string()), (text) => {
        for (const parse of [parseDuration, parseSize, parseRate]) {
          const value = parse(text)
          assert.ok(value === undefined || (Number.isFinite(value) && value >= 0), `${parse.name}(${JSON.stringify(text)}) = ${value}`)
        }
      }),
      { numRuns: 2000 },
    )
  })

  test('what the JSON Schema pattern lets an editor accept is exactly what the parser reads', () => {
    const cases = [
      { schema: duration(), parse: parseDuration },
      { schema: size(), parse: parseSize },
      { schema: rate(), parse: parseRate },
    ]
    assert.equal(schemaPattern(duration()).source, DURATION_HINT.pattern)
    for (const { schema, parse } of cases) {
      const pattern = schemaPattern(schema)
      fc.assert(
        fc.property(unitText, (text) => {
          assert.equal(pattern.test(text), parse(text) !== undefined, `${JSON.stringify(text)} against ${pattern}`)
        }),
        { numRuns: 2000 },
      )
    }
  })

  test('a duration the schema accepts is at least 1ms unless written as zero', () => {
    fc.assert(
      fc.property(unitText, (text) => {
        const result = v.safeParse(duration(), text)
        if (result.success) assert.ok(result.output >= 1 || !/[1-9]/.test(text), `${JSON.stringify(text)} became ${result.output}`)
      }),
      { numRuns: 2000 },
    )
  })
})
