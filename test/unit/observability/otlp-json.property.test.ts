import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import { OtlpJson, unixNanos } from '../../../src/observability/otlp-json.ts'
import type { AttributeValue, FinishedSpan } from '../../../src/observability/tracing.ts'

// The request as the exporter built it before OtlpJson: OTLP/JSON's objects, then JSON.stringify.
function reference(resource: Array<[string, AttributeValue]>, scope: { name: string; version: string }, spans: FinishedSpan[]): string {
  const value = (v: AttributeValue) => (typeof v === 'string' ? { stringValue: v } : typeof v === 'boolean' ? { boolValue: v } : Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v })
  const attributes = (list: Array<[string, AttributeValue]>) => list.map(([key, v]) => ({ key, value: value(v) }))
  const nanos = (ms: number) => {
    const whole = Math.floor(ms)
    return (BigInt(whole) * 1_000_000n + BigInt(Math.round((ms - whole) * 1e6))).toString()
  }
  return JSON.stringify({
    resourceSpans: [
      {
        resource: { attributes: attributes(resource) },
        scopeSpans: [
          {
            scope,
            spans: spans.map((span) => ({
              traceId: span.traceId,
              spanId: span.spanId,
              ...(span.parentSpanId !== undefined ? { parentSpanId: span.parentSpanId } : {}),
              name: span.name,
              kind: span.kind,
              startTimeUnixNano: nanos(span.startMs),
              endTimeUnixNano: nanos(span.endMs),
              attributes: attributes(span.attributes),
              status: span.status,
            })),
          },
        ],
      },
    ],
  })
}

const text = fc.string({ unit: 'binary', maxLength: 24 })
const attributeValue: fc.Arbitrary<AttributeValue> = fc.oneof(text, fc.boolean(), fc.integer(), fc.integer({ min: 0, max: 2 ** 31 - 1 }), fc.double(), fc.maxSafeInteger())
const attribute = fc.tuple(text, attributeValue) as fc.Arbitrary<[string, AttributeValue]>
const epochMs = fc.oneof(fc.double({ min: 1, max: 4e12, noNaN: true }), fc.integer({ min: 1, max: 4e12 }), fc.constant(1_700_000_000_123.9999999))
const span: fc.Arbitrary<FinishedSpan> = fc.record({
  traceId: fc.oneof(fc.stringMatching(/^[0-9a-f]{32}$/), text),
  spanId: fc.stringMatching(/^[0-9a-f]{16}$/),
  parentSpanId: fc.option(fc.stringMatching(/^[0-9a-f]{16}$/), { nil: undefined }),
  name: text,
  kind: fc.constantFrom(2, 3),
  startMs: epochMs,
  endMs: epochMs,
  attributes: fc.array(attribute, { maxLength: 8 }),
  status: fc.oneof(fc.record({ code: fc.constantFrom(0, 1) }), fc.record({ code: fc.constant(2), message: text })),
})

describe('OTLP/JSON spans written as bytes', () => {
  test('property: a batch is byte for byte what JSON.stringify of its OTLP objects gives', () => {
    fc.assert(
      fc.property(fc.array(attribute, { maxLength: 4 }), text, fc.array(span, { maxLength: 6 }), (resource, version, spans) => {
        const json = new OtlpJson(resource, { name: 'pillion', version })
        const batch = json.batch()
        for (const each of spans) json.add(batch, each)
        const written = new TextDecoder().decode(json.end(batch))
        assert.equal(written, reference(resource, { name: 'pillion', version }, spans))
      }),
      { numRuns: 1000 },
    )
  })

  test('property: nanosecond times agree with the BigInt arithmetic, rounding up into the next millisecond included', () => {
    const exact = (ms: number) => (BigInt(Math.floor(ms)) * 1_000_000n + BigInt(Math.round((ms - Math.floor(ms)) * 1e6))).toString()
    fc.assert(
      fc.property(fc.oneof(fc.double({ min: 0, max: 2e15, noNaN: true }), fc.integer({ min: 0, max: 4e12 })), (ms) => {
        assert.equal(unixNanos(ms), exact(ms))
      }),
      { numRuns: 5000 },
    )
    assert.equal(unixNanos(1000.9999999), '1001000000')
    assert.equal(unixNanos(0.5), '500000')
  })
})
