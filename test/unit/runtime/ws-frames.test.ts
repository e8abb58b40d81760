import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { FrameScanner, closeFrame } from '../../../src/runtime/ws-frames.ts'

const TEXT = 0x1
const BINARY = 0x2
const CONTINUATION = 0x0
const CLOSE = 0x8
const PING = 0x9

/** One frame as a client (masked) or a server (unmasked) would send it. */
function frame(opcode: number, payload: Uint8Array, options: { fin?: boolean; masked?: boolean } = {}): Uint8Array {
  const { fin = true, masked = false } = options
  const length = payload.byteLength
  const lengthBytes = length < 126 ? 0 : length < 65536 ? 2 : 8
  const header = new Uint8Array(2 + lengthBytes + (masked ? 4 : 0))
  header[0] = (fin ? 0x80 : 0) | opcode
  header[1] = (masked ? 0x80 : 0) | (lengthBytes === 0 ? length : lengthBytes === 2 ? 126 : 127)
  const view = new DataView(header.buffer)
  if (lengthBytes === 2) view.setUint16(2, length)
  if (lengthBytes === 8) view.setBigUint64(2, BigInt(length))
  const body = payload.slice()
  if (masked) {
    const key = new Uint8Array([0x37, 0xfa, 0x21, 0x3d])
    header.set(key, 2 + lengthBytes)
    for (let i = 0; i < body.byteLength; i++) body[i] = body[i]! ^ key[i & 3]!
  }
  return concat(header, body)
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const all = new Uint8Array(parts.reduce((sum, part) => sum + part.byteLength, 0))
  let at = 0
  for (const part of parts) {
    all.set(part, at)
    at += part.byteLength
  }
  return all
}

const text = (s: string) => new TextEncoder().encode(s)
const closePayload = (code: number, reason: string) => concat(new Uint8Array([code >> 8, code & 0xff]), text(reason))

/** Scans the chunks in order; returns everything that passed and the last scan. */
function scanAll(scanner: FrameScanner, chunks: Uint8Array[]) {
  const passed: Uint8Array[] = []
  let last
  for (const chunk of chunks) {
    last = scanner.scan(chunk)
    passed.push(last.pass)
  }
  return { passed: concat(...passed), last: last! }
}

describe('FrameScanner', () => {
  test('passes masked and unmasked frames unchanged and counts messages and payload bytes', () => {
    for (const masked of [false, true]) {
      const scanner = new FrameScanner(0)
      const stream = concat(frame(TEXT, text('hello'), { masked }), frame(BINARY, new Uint8Array([1, 2, 3]), { masked }))
      const { passed, last } = scanAll(scanner, [stream])
      assert.deepEqual(passed, stream)
      assert.equal(last.stop, undefined)
      assert.equal(scanner.messages, 2)
      assert.equal(scanner.bytes, 8)
      assert.equal(scanner.atBoundary, true)
    }
  })

  test('reads 7-, 16- and 64-bit payload lengths', () => {
    for (const size of [125, 126, 65535, 65536, 70_000]) {
      const scanner = new FrameScanner(0)
      const stream = frame(BINARY, new Uint8Array(size), { masked: size % 2 === 0 })
      const { passed } = scanAll(scanner, [stream])
      assert.equal(passed.byteLength, stream.byteLength, `size ${size}`)
      assert.equal(scanner.bytes, size)
      assert.equal(scanner.messages, 1)
      assert.equal(scanner.atBoundary, true)
    }
  })

  test('a frame larger than the limit is held back at its header, whatever its length encoding', () => {
    for (const size of [101, 300, 70_000]) {
      const scanner = new FrameScanner(100)
      const first = frame(TEXT, text('ok'))
      const { passed, last } = scanAll(scanner, [concat(first, frame(BINARY, new Uint8Array(size)))])
      assert.deepEqual(passed, first)
      assert.equal(last.stop, 'too-big')
      assert.equal(scanner.atBoundary, true)
      // Stopped for good: nothing passes after.
      assert.equal(scanner.scan(frame(TEXT, text('x'))).pass.byteLength, 0)
    }
  })

  test('a message of exactly the limit passes', () => {
    const scanner = new FrameScanner(100)
    const stream = frame(BINARY, new Uint8Array(100), { masked: true })
    assert.deepEqual(scanAll(scanner, [stream]).passed, stream)
  })

  test('fragments add up: the fragment that takes a message past the limit is stopped, control frames between them do not count', () => {
    const scanner = new FrameScanner(10)
    const head = concat(frame(TEXT, text('abcd'), { fin: false }), frame(PING, text('ping-ping-ping')), frame(CONTINUATION, text('efgh'), { fin: false }))
    const { passed, last } = scanAll(scanner, [head, frame(CONTINUATION, text('ijk'))])
    assert.deepEqual(passed, head)
    assert.equal(last.stop, 'too-big')
    assert.equal(scanner.messages, 0)
  })

  test('a fragmented message within the limit counts once, and the next message starts from zero', () => {
    const scanner = new FrameScanner(10)
    const stream = concat(
      frame(TEXT, text('abcde'), { fin: false, masked: true }),
      frame(CONTINUATION, text('fghij'), { masked: true }),
      frame(TEXT, text('klmnopqrst'), { masked: true }),
    )
    const { passed, last } = scanAll(scanner, [stream])
    assert.deepEqual(passed, stream)
    assert.equal(last.stop, undefined)
    assert.equal(scanner.messages, 2)
    assert.equal(scanner.bytes, 20)
  })

  test('a header split across chunks is held back until it is whole, then passes unchanged', () => {
    const whole = concat(frame(TEXT, text('x')), frame(BINARY, new Uint8Array(300), { masked: true }), frame(TEXT, text('y')))
    // Split at every point, including inside the 16-bit length and the masking key of the second frame.
    for (let cut = 1; cut < whole.byteLength; cut++) {
      const scanner = new FrameScanner(0)
      const { passed } = scanAll(scanner, [whole.subarray(0, cut), whole.subarray(cut)])
      assert.deepEqual(passed, whole, `cut at ${cut}`)
      assert.equal(scanner.messages, 3)
    }
    // Byte by byte: the first scan of a header passes nothing and says nothing.
    const scanner = new FrameScanner(0)
    const first = scanner.scan(whole.subarray(0, 1))
    assert.equal(first.pass.byteLength, 0)
    assert.equal(scanner.atBoundary, true)
    const { passed } = scanAll(scanner, [...whole.subarray(1)].map((byte) => new Uint8Array([byte])))
    assert.deepEqual(passed, whole)
  })

  test('a 64-bit length split across chunks is still checked against the limit', () => {
    const scanner = new FrameScanner(65_536)
    const big = frame(BINARY, new Uint8Array(70_000))
    const a = scanner.scan(big.subarray(0, 5))
    assert.equal(a.pass.byteLength, 0)
    const b = scanner.scan(big.subarray(5, 20))
    assert.equal(b.pass.byteLength, 0)
    assert.equal(b.stop, 'too-big')
  })

  test('sees the close code and reason, masked or not, even split across chunks', () => {
    for (const masked of [false, true]) {
      const scanner = new FrameScanner(0)
      const close = frame(CLOSE, closePayload(4001, 'bye now'), { masked })
      const a = scanner.scan(close.subarray(0, 5))
      assert.equal(a.closed, undefined)
      const b = scanner.scan(close.subarray(5))
      assert.deepEqual(b.closed, { code: 4001, reason: 'bye now' })
      assert.deepEqual(scanner.closeSeen, { code: 4001, reason: 'bye now' })
      assert.equal(scanner.messages, 0)
      assert.equal(scanner.bytes, 0)
    }
  })

  test('a close frame without a code is reported as 1005', () => {
    const scanner = new FrameScanner(0)
    assert.deepEqual(scanner.scan(frame(CLOSE, new Uint8Array(0), { masked: true })).closed, { code: 1005, reason: '' })
  })

  test('a stop asked for mid-frame comes at the end of that frame; at a boundary, at once', () => {
    const scanner = new FrameScanner(0)
    const one = frame(BINARY, new Uint8Array(50))
    const two = frame(TEXT, text('after'))
    const first = scanner.scan(one.subarray(0, 20))
    assert.equal(first.pass.byteLength, 20)
    assert.equal(scanner.atBoundary, false)
    scanner.stopAtBoundary()
    const rest = scanner.scan(concat(one.subarray(20), two))
    assert.deepEqual(rest.pass, one.subarray(20))
    assert.equal(rest.stop, 'requested')
    assert.equal(scanner.messages, 1)

    const idle = new FrameScanner(0)
    idle.scan(two)
    idle.stopAtBoundary()
    assert.deepEqual(idle.scan(two), { pass: new Uint8Array(0), stop: 'requested' })
  })

  test('a stop asked for when a chunk ends exactly at the end of a frame comes with that chunk', () => {
    const scanner = new FrameScanner(0)
    const one = frame(BINARY, new Uint8Array(50))
    scanner.scan(one.subarray(0, 10))
    scanner.stopAtBoundary()
    const end = scanner.scan(one.subarray(10))
    assert.equal(end.pass.byteLength, one.byteLength - 10)
    assert.equal(end.stop, 'requested')
  })
})

describe('closeFrame', () => {
  test('toward the client: unmasked, code and reason as given', () => {
    const built = closeFrame(1009, 'message too big', false)
    assert.deepEqual([...built.subarray(0, 2)], [0x88, 2 + 15])
    assert.deepEqual(built.subarray(2), closePayload(1009, 'message too big'))
    const scanner = new FrameScanner(0)
    assert.deepEqual(scanner.scan(built).closed, { code: 1009, reason: 'message too big' })
  })

  test('toward the upstream: masked with a key, and unmasks to the same code and reason', () => {
    const built = closeFrame(1001, 'going away', true)
    assert.equal(built[0], 0x88)
    assert.equal(built[1], 0x80 | 12)
    assert.equal(built.byteLength, 2 + 4 + 12)
    const key = built.subarray(2, 6)
    const payload = built.subarray(6).map((byte, i) => byte ^ key[i & 3]!)
    assert.deepEqual(payload, closePayload(1001, 'going away'))
    assert.deepEqual(new FrameScanner(0).scan(built).closed, { code: 1001, reason: 'going away' })
  })

  test('a long reason is cut to fit a control frame, never inside a character', () => {
    const built = closeFrame(1001, 'é'.repeat(100), false)
    assert.ok(built.byteLength <= 2 + 125)
    const seen = new FrameScanner(0).scan(built).closed!
    assert.equal(seen.code, 1001)
    assert.equal(seen.reason, 'é'.repeat(61))
  })
})
