/**
 * Watches one direction of a WebSocket byte stream frame by frame (RFC 6455 §5.2) without changing a
 * byte, so a bridge that relays raw bytes can still enforce max_message, count messages, see close
 * codes, and inject a close frame of its own at a frame boundary. Web-standard (Uint8Array only), so
 * any runtime's raw relay can use it.
 */

const OPCODE_CONTINUATION = 0x0
const OPCODE_CLOSE = 0x8
/** Data frames have opcodes below this; control frames (close, ping, pong) at or above. */
const FIRST_CONTROL_OPCODE = 0x8

/** A close frame that has passed: its code (1005 when it had none) and reason. */
export interface CloseSeen {
  code: number
  reason: string
}

export interface Scan {
  /** The bytes that may pass on, a view of the input; everything after them is held back for good when stop is set. */
  pass: Uint8Array
  /** Why this direction stops here: a message larger than the limit begins next, or a stop was asked for. */
  stop?: 'too-big' | 'requested'
  /** Set on the scan in which a close frame finished passing. */
  closed?: CloseSeen
}

const EMPTY = new Uint8Array(0)
const decoder = new TextDecoder()

export class FrameScanner {
  readonly #maxMessageBytes: number
  /** The start of a frame header that a chunk ended inside of, held back until the rest comes. */
  #pending: Uint8Array | undefined
  /** Payload bytes of the current frame still to pass. */
  #remaining = 0
  #opcode = 0
  #fin = false
  /** Size so far of the data message being sent, fragments added up. */
  #message = 0
  /** A close frame's payload, unmasked as it passes (at most 125 bytes). */
  #close: Uint8Array | undefined
  #closeFilled = 0
  #mask: Uint8Array | undefined
  #stopRequested = false
  #stopped = false
  /** Whole data messages passed, and their payload bytes. */
  messages = 0
  bytes = 0
  /** The close frame that passed, if one did. */
  closeSeen: CloseSeen | undefined

  /** maxMessageBytes 0: no limit. */
  constructor(maxMessageBytes: number) {
    this.#maxMessageBytes = maxMessageBytes
  }

  /** Between frames in what has passed: a frame injected now would not land inside another. */
  get atBoundary(): boolean {
    return this.#remaining === 0
  }

  /** Stop at the end of the frame now passing (the next scan says stop: 'requested'). */
  stopAtBoundary(): void {
    this.#stopRequested = true
  }

  scan(chunk: Uint8Array): Scan {
    if (this.#stopped) return { pass: EMPTY, stop: 'requested' }
    let data = chunk
    if (this.#pending !== undefined) {
      data = new Uint8Array(this.#pending.byteLength + chunk.byteLength)
      data.set(this.#pending)
      data.set(chunk, this.#pending.byteLength)
      this.#pending = undefined
    }
    let closed: CloseSeen | undefined
    let at = 0
    while (at < data.byteLength) {
      if (this.#remaining > 0) {
        const take = Math.min(this.#remaining, data.byteLength - at)
        if (this.#close !== undefined) this.#collectClose(data, at, take)
        if (this.#opcode < FIRST_CONTROL_OPCODE) this.bytes += take
        this.#remaining -= take
        at += take
        if (this.#remaining === 0) closed = this.#frameEnd() ?? closed
        continue
      }
      if (this.#stopRequested) return this.#stop(data.subarray(0, at), 'requested', closed)
      const header = this.#header(data, at)
      if (header === undefined) {
        this.#pending = data.slice(at)
        return { pass: data.subarray(0, at), ...(closed && { closed }) }
      }
      if (header === 'too-big') return this.#stop(data.subarray(0, at), 'too-big', closed)
      at += header
      if (this.#remaining === 0) closed = this.#frameEnd() ?? closed
    }
    if (this.#stopRequested && this.#remaining === 0) return this.#stop(data, 'requested', closed)
    return { pass: data, ...(closed && { closed }) }
  }

  /** Reads the frame header at `at`: its length, undefined when it is not all here, 'too-big' to refuse it. */
  #header(data: Uint8Array, at: number): number | 'too-big' | undefined {
    const available = data.byteLength - at
    if (available < 2) return undefined
    const b0 = data[at]
    const b1 = data[at + 1]
    const masked = (b1 & 0x80) !== 0
    let length = b1 & 0x7f
    const lengthBytes = length === 126 ? 2 : length === 127 ? 8 : 0
    const headerLength = 2 + lengthBytes + (masked ? 4 : 0)
    if (available < headerLength) return undefined
    if (length === 126) length = (data[at + 2] << 8) | data[at + 3]
    else if (length === 127) {
      // 64-bit big-endian; beyond 2^53 nothing is exact, and such a frame is over any limit anyway.
      let high = 0
      for (let i = 0; i < 4; i++) high = high * 256 + data[at + 2 + i]
      let low = 0
      for (let i = 4; i < 8; i++) low = low * 256 + data[at + 2 + i]
      length = high * 2 ** 32 + low
    }
    const opcode = b0 & 0x0f
    const fin = (b0 & 0x80) !== 0
    if (opcode < FIRST_CONTROL_OPCODE) {
      const size = opcode === OPCODE_CONTINUATION ? this.#message + length : length
      if (this.#maxMessageBytes > 0 && size > this.#maxMessageBytes) return 'too-big'
      this.#message = fin ? 0 : size
    }
    this.#opcode = opcode
    this.#fin = fin
    this.#remaining = length
    if (opcode === OPCODE_CLOSE) {
      this.#close = new Uint8Array(Math.min(length, 125))
      this.#closeFilled = 0
      this.#mask = masked ? data.slice(at + 2 + lengthBytes, at + headerLength) : undefined
    }
    return headerLength
  }

  #collectClose(data: Uint8Array, at: number, take: number): void {
    const close = this.#close!
    const mask = this.#mask
    for (let i = 0; i < take && this.#closeFilled < close.byteLength; i++) {
      const index = this.#closeFilled++
      close[index] = mask === undefined ? data[at + i] : data[at + i] ^ mask[index & 3]
    }
  }

  /** A frame has passed whole: count a finished message, or read a close frame's code and reason. */
  #frameEnd(): CloseSeen | undefined {
    if (this.#opcode < FIRST_CONTROL_OPCODE) {
      if (this.#fin) this.messages++
      return undefined
    }
    const close = this.#close
    if (close === undefined) return undefined
    this.#close = undefined
    const seen: CloseSeen =
      close.byteLength < 2 ? { code: 1005, reason: '' } : { code: (close[0] << 8) | close[1], reason: decoder.decode(close.subarray(2)) }
    this.closeSeen ??= seen
    return seen
  }

  #stop(pass: Uint8Array, stop: 'too-big' | 'requested', closed: CloseSeen | undefined): Scan {
    this.#stopped = true
    this.#pending = undefined
    return { pass, stop, ...(closed && { closed }) }
  }
}

const encoder = new TextEncoder()

/**
 * A close frame (RFC 6455 §5.5.1) with the reason cut to fit 125 bytes on a character boundary;
 * masked when it goes to the upstream (a client's frames must be, §5.3), plain toward the client.
 */
export function closeFrame(code: number, reason: string, masked: boolean): Uint8Array<ArrayBuffer> {
  let text = encoder.encode(reason)
  if (text.byteLength > 123) {
    let end = 123
    while (end > 0 && (text[end] & 0xc0) === 0x80) end-- // never split a UTF-8 sequence
    text = text.subarray(0, end)
  }
  const payloadLength = 2 + text.byteLength
  const headerLength = masked ? 6 : 2
  const frame = new Uint8Array(headerLength + payloadLength)
  frame[0] = 0x80 | OPCODE_CLOSE
  frame[1] = (masked ? 0x80 : 0) | payloadLength
  frame[headerLength] = code >> 8
  frame[headerLength + 1] = code & 0xff
  frame.set(text, headerLength + 2)
  if (masked) {
    const key = crypto.getRandomValues(new Uint8Array(4))
    frame.set(key, 2)
    for (let i = 0; i < payloadLength; i++) frame[headerLength + i] = frame[headerLength + i] ^ key[i & 3]
  }
  return frame
}
