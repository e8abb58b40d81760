const encoder = new TextEncoder()
const decoder = new TextDecoder()
const QUOTE = 0x22
const BACKSLASH = 0x5c
const ZERO = 0x30
const DOT = 0x2e
/** UTF-8 takes at most 3 bytes for one UTF-16 code unit (a surrogate pair is 4 bytes for 2 units). */
const MAX_BYTES_PER_UNIT = 3

/**
 * One JSON object written as UTF-8 straight into a buffer kept from line to line: the access log's
 * line without a string for each piece, nor one for the whole, nor an encode pass at the end. The
 * bytes are what JSON.stringify of the same object would give. One line is written at a time.
 */
export class JsonLine {
  #bytes: Uint8Array

  /** Bytes written so far of the current line. */
  length = 0
  /** timestamp()'s last second, and its text up to the millis as bytes. */
  #second = Number.NaN
  #secondBytes = new Uint8Array(0)

  /** `capacity`: the bytes to start with; it grows by doubling past them. */
  constructor(capacity = 1024) {
    this.#bytes = new Uint8Array(capacity)
  }

  /** The line's bytes, valid until the next start(). */
  get bytes(): Uint8Array {
    return this.#bytes
  }

  start(): void {
    this.length = 0
  }

  /** Whether no field has been written since start(). */
  get empty(): boolean {
    return this.length === 0
  }

  /** ASCII bytes made once (a field's `{"key":` or `,"key":`). */
  raw(ascii: Uint8Array): void {
    const at = this.#room(ascii.length)
    const bytes = this.#bytes
    for (let i = 0; i < ascii.length; i++) bytes[at + i] = ascii[i]!
    this.length = at + ascii.length
  }

  /** A number as JSON writes it: non-finite ones are null. */
  number(value: number): void {
    if (value >= 0 && value <= 0x7fffffff && Math.floor(value) === value) return this.#digits(value)
    this.#ascii(Number.isFinite(value) ? String(value) : 'null')
  }

  /**
   * A duration in milliseconds rounded to the microsecond, as String(Math.round(ms * 1000) / 1000)
   * writes it (that quotient's shortest form is its three decimals without trailing zeros).
   */
  millis3(ms: number): void {
    const micros = Math.round(ms * 1000)
    if (!(micros >= 0 && micros <= 0x7fffffff)) return this.number(micros / 1000)
    const whole = Math.floor(micros / 1000)
    let fraction = micros - whole * 1000
    this.#digits(whole)
    if (fraction === 0) return
    let digits = 3
    while (fraction % 10 === 0) {
      fraction /= 10
      digits--
    }
    const at = this.#room(digits + 1)
    const bytes = this.#bytes
    bytes[at] = DOT
    for (let i = digits; i > 0; i--) {
      bytes[at + i] = ZERO + (fraction % 10)
      fraction = Math.floor(fraction / 10)
    }
    this.length = at + digits + 1
  }

  /**
   * A time in ms since the epoch as JSON.stringify writes a Date (toISOString, "2026-11-26T19:07:40.123Z").
   * The part up to the seconds is kept from the last call: lines of one second share it.
   */
  timestamp(ms: number): void {
    const whole = Math.floor(ms)
    const second = Math.floor(whole / 1000)
    if (second !== this.#second) {
      const date = new Date(second * 1000)
      if (Number.isNaN(date.getTime())) return this.#ascii('null')
      const iso = date.toISOString()
      this.#second = second
      this.#secondBytes = encoder.encode(`"${iso.slice(0, -4)}`) // "2026-11-26T19:07:40.
    }
    this.raw(this.#secondBytes)
    let millis = whole - second * 1000
    const at = this.#room(5)
    const bytes = this.#bytes
    for (let i = at + 2; i >= at; i--) {
      bytes[i] = ZERO + (millis % 10)
      millis = Math.floor(millis / 10)
    }
    bytes[at + 3] = 0x5a // Z
    bytes[at + 4] = QUOTE
    this.length = at + 5
  }

  /** A string as JSON.stringify quotes it; printable ASCII without `"` or `\` goes as it is. */
  string(value: string): void {
    const start = this.#room(value.length + 2)
    const bytes = this.#bytes
    bytes[start] = QUOTE
    let at = start + 1
    for (let i = 0; i < value.length; i++) {
      const code = value.charCodeAt(i)
      if (code < 0x20 || code > 0x7e || code === QUOTE || code === BACKSLASH) return this.#escaped(value, start)
      bytes[at++] = code
    }
    bytes[at] = QUOTE
    this.length = at + 1
  }

  /** The line as text (for tests and for callers that want a string). */
  text(): string {
    return decoder.decode(this.#bytes.subarray(0, this.length))
  }

  /** A string that needs escapes or is not ASCII: JSON.stringify's text, UTF-8 encoded, from `start` on. */
  #escaped(value: string, start: number): void {
    const json = JSON.stringify(value)
    this.length = start
    this.#room(json.length * MAX_BYTES_PER_UNIT)
    const { written } = encoder.encodeInto(json, this.#bytes.subarray(start))
    this.length = start + written
  }

  #ascii(text: string): void {
    const at = this.#room(text.length)
    const bytes = this.#bytes
    for (let i = 0; i < text.length; i++) bytes[at + i] = text.charCodeAt(i)
    this.length = at + text.length
  }

  /** A whole number from 0 to 2^31 - 1. */
  #digits(value: number): void {
    let count = 1
    for (let rest = value; rest >= 10; rest = Math.floor(rest / 10)) count++
    const at = this.#room(count)
    const bytes = this.#bytes
    for (let i = at + count - 1; i >= at; i--) {
      bytes[i] = ZERO + (value % 10)
      value = Math.floor(value / 10)
    }
    this.length = at + count
  }

  /** Makes room for `count` more bytes; returns where they go. */
  #room(count: number): number {
    const at = this.length
    if (at + count > this.#bytes.length) {
      const grown = new Uint8Array(Math.max(this.#bytes.length * 2, at + count))
      grown.set(this.#bytes.subarray(0, at))
      this.#bytes = grown
    }
    return at
  }
}

/** Text known to be ASCII (field names), as bytes. */
export function asciiBytes(text: string): Uint8Array {
  return encoder.encode(text)
}
