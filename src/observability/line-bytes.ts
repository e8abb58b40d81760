import { concatBytes } from '../core/body.ts'

const encoder = new TextEncoder()
const NEWLINE = 0x0a
/** UTF-8 takes at most 3 bytes for one UTF-16 code unit (a surrogate pair is 4 bytes for 2 units). */
const MAX_BYTES_PER_UNIT = 3

/**
 * Lines waiting to be written, kept as UTF-8 bytes (each followed by a newline) in chunks of
 * `chunkBytes`. A line is encoded the moment it arrives, so no line string outlives its push: a busy
 * log otherwise holds a batch of strings (on JavaScriptCore and V8 ropes of a dozen pieces each)
 * long enough for the collector to move them to the old generation, and pays to copy them twice more.
 */
export class LineBytes {
  readonly #chunkBytes: number
  /** Filled chunks, oldest first. */
  #full: Uint8Array[] = []
  #current: Uint8Array | undefined
  #used = 0
  /** Bytes waiting, newlines included. */
  bytes = 0
  /** Lines waiting. */
  lines = 0

  constructor(chunkBytes: number) {
    this.#chunkBytes = chunkBytes
  }

  /** Appends the line and a newline unless that would take the bytes waiting past `maxBytes`. */
  append(line: string, maxBytes: number): boolean {
    let written = this.#encode(line)
    if (written < 0) {
      this.#startChunk(line.length * MAX_BYTES_PER_UNIT + 1)
      written = this.#encode(line)
    }
    if (this.bytes + written + 1 > maxBytes) return false
    return this.#ended(written)
  }

  /** Appends the first `length` bytes of `line` (UTF-8 already) and a newline, under the same cap as append. */
  appendBytes(line: Uint8Array, length: number, maxBytes: number): boolean {
    if (this.bytes + length + 1 > maxBytes) return false
    if (this.#current === undefined || this.#current.byteLength - this.#used < length + 1) this.#startChunk(length + 1)
    this.#current!.set(line.subarray(0, length), this.#used)
    return this.#ended(length)
  }

  /** Seals the current chunk and starts one with room for at least `bytes`. */
  #startChunk(bytes: number): void {
    this.#seal()
    this.#current = new Uint8Array(Math.max(this.#chunkBytes, bytes))
  }

  /** The line's `written` bytes are in the current chunk: its newline follows, and it counts. */
  #ended(written: number): true {
    this.#current![this.#used + written] = NEWLINE
    this.#used += written + 1
    this.bytes += written + 1
    this.lines++
    return true
  }

  /** Everything waiting, as one array; the buffer is empty afterwards. */
  take(): Uint8Array {
    this.#seal()
    const taken = concatBytes(this.#full, this.bytes)
    this.#full = []
    this.bytes = 0
    this.lines = 0
    return taken
  }

  /** The line's byte length once written into the current chunk (not yet counted), or -1 if it does not fit. */
  #encode(line: string): number {
    const current = this.#current
    if (current === undefined) return -1
    // One byte stays free for the newline.
    const room = current.byteLength - this.#used - 1
    if (room < line.length) return -1
    const { read, written } = encoder.encodeInto(line, current.subarray(this.#used, this.#used + room))
    return read === line.length ? written : -1
  }

  #seal(): void {
    if (this.#current !== undefined && this.#used > 0) this.#full.push(this.#current.subarray(0, this.#used))
    this.#current = undefined
    this.#used = 0
  }
}
