import { asciiBytes, JsonLine } from './json-line.ts'
import type { AttributeValue, FinishedSpan } from './tracing.ts'

const encoder = new TextEncoder()

/** Each key with the punctuation before it, as bytes made once. */
const TRACE_ID = asciiBytes('{"traceId":')
const NEXT_TRACE_ID = asciiBytes(',{"traceId":')
const SPAN_ID = asciiBytes(',"spanId":')
const PARENT_SPAN_ID = asciiBytes(',"parentSpanId":')
const NAME = asciiBytes(',"name":')
const KIND = asciiBytes(',"kind":')
const START = asciiBytes(',"startTimeUnixNano":')
const END = asciiBytes(',"endTimeUnixNano":')
const ATTRIBUTES = asciiBytes(',"attributes":[')
const STATUS = asciiBytes('],"status":{"code":')
const MESSAGE = asciiBytes(',"message":')
const FIRST_KEY = asciiBytes('{"key":')
const NEXT_KEY = asciiBytes(',{"key":')
const STRING_VALUE = asciiBytes(',"value":{"stringValue":')
const INT_VALUE = asciiBytes(',"value":{"intValue":')
const DOUBLE_VALUE = asciiBytes(',"value":{"doubleValue":')
const TRUE_VALUE = asciiBytes(',"value":{"boolValue":true')
const FALSE_VALUE = asciiBytes(',"value":{"boolValue":false')
const QUOTE = asciiBytes('"')
const CLOSE_TWO = asciiBytes('}}')
const SPANS_END = asciiBytes(']}]}]}')
const RESOURCE = asciiBytes('{"resourceSpans":[{"resource":{"attributes":[')
const SCOPE = asciiBytes(']},"scopeSpans":[{"scope":')
const SPANS = asciiBytes(',"spans":[')

const MIN_BATCH_BYTES = 1024

/** Spans written into one request body, in the order they came; at most MAX_BATCH of them. */
export class SpanBatch {
  readonly line: JsonLine
  count = 0

  constructor(capacity: number) {
    this.line = new JsonLine(capacity)
  }
}

/**
 * Spans as OTLP/JSON bytes: each span is written once, as it is queued, straight into the body of
 * the request that will carry it (the request's head, then spans joined by commas), and ending the
 * batch writes the request's end. The text is what JSON.stringify of ExportTraceServiceRequest's
 * objects gives (ids in hex, 64-bit integers as decimal strings), without those objects, the whole
 * string, an encode pass over it, or a copy per span.
 */
export class OtlpJson {
  /** `{"resourceSpans":[{"resource":…,"scopeSpans":[{"scope":…,"spans":[` */
  readonly #head: Uint8Array
  /** The last ended batch's size: the next starts with that much room, so a steady stream of full batches never grows one. */
  #lastBytes = MIN_BATCH_BYTES

  constructor(resource: ReadonlyArray<[string, AttributeValue]>, scope: { name: string; version: string }) {
    const line = new JsonLine()
    line.start()
    line.raw(RESOURCE)
    attributes(line, resource)
    line.raw(SCOPE)
    line.raw(encoder.encode(JSON.stringify(scope)))
    line.raw(SPANS)
    this.#head = line.bytes.slice(0, line.length)
  }

  /** A request body with nothing in it yet but its head. */
  batch(): SpanBatch {
    const batch = new SpanBatch(this.#lastBytes)
    batch.line.start()
    batch.line.raw(this.#head)
    return batch
  }

  /** Writes one span's JSON object into the batch. */
  add(batch: SpanBatch, span: FinishedSpan): void {
    // Before the first byte: were either to throw, the batch would stay whole.
    const start = unixNanos(span.startMs)
    const end = unixNanos(span.endMs)
    const line = batch.line
    line.raw(batch.count === 0 ? TRACE_ID : NEXT_TRACE_ID)
    batch.count++
    line.string(span.traceId)
    line.raw(SPAN_ID)
    line.string(span.spanId)
    if (span.parentSpanId !== undefined) {
      line.raw(PARENT_SPAN_ID)
      line.string(span.parentSpanId)
    }
    line.raw(NAME)
    line.string(span.name)
    line.raw(KIND)
    line.number(span.kind)
    line.raw(START)
    line.string(start)
    line.raw(END)
    line.string(end)
    line.raw(ATTRIBUTES)
    attributes(line, span.attributes)
    line.raw(STATUS)
    line.number(span.status.code)
    if (span.status.message !== undefined) {
      line.raw(MESSAGE)
      line.string(span.status.message)
    }
    line.raw(CLOSE_TWO)
  }

  /** The batch's ExportTraceServiceRequest, ended; the batch takes no more spans. */
  end(batch: SpanBatch): Uint8Array {
    batch.line.raw(SPANS_END)
    this.#lastBytes = Math.max(MIN_BATCH_BYTES, batch.line.length)
    return batch.line.bytes.subarray(0, batch.line.length)
  }
}

/** The elements of an attributes array: `{"key":…,"value":…}` each. */
function attributes(line: JsonLine, list: ReadonlyArray<[string, AttributeValue]>): void {
  for (let i = 0; i < list.length; i++) {
    const [key, value] = list[i]!
    line.raw(i === 0 ? FIRST_KEY : NEXT_KEY)
    line.string(key)
    attributeValue(line, value)
  }
}

/** `{"stringValue":…}`, `{"boolValue":…}`, `{"intValue":"…"}` (OTLP/JSON writes 64-bit integers as strings) or `{"doubleValue":…}`. */
function attributeValue(line: JsonLine, value: AttributeValue): void {
  if (typeof value === 'string') {
    line.raw(STRING_VALUE)
    line.string(value)
  } else if (typeof value === 'boolean') {
    line.raw(value ? TRUE_VALUE : FALSE_VALUE)
  } else if (Number.isInteger(value)) {
    line.raw(INT_VALUE)
    if (value >= 0 && value <= 0x7fffffff) {
      line.raw(QUOTE)
      line.number(value)
      line.raw(QUOTE)
    } else line.string(String(value))
  } else {
    line.raw(DOUBLE_VALUE)
    line.number(value)
  }
  line.raw(CLOSE_TWO)
}

/** Whole milliseconds below this print as plain digits, and their nanoseconds stay exact with six more. */
const PLAIN_MS = 1e15

/** Epoch milliseconds (fractional) as a decimal string of nanoseconds, exact past 2^53. */
export function unixNanos(ms: number): string {
  let whole = Math.floor(ms)
  let nanos = Math.round((ms - whole) * 1e6)
  if (!(whole >= 1 && whole < PLAIN_MS)) return (BigInt(whole) * 1_000_000n + BigInt(nanos)).toString()
  if (nanos === 1e6) {
    whole++
    nanos = 0
  }
  return `${whole}${String(nanos).padStart(6, '0')}`
}
