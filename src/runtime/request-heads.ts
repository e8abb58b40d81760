import { ChunkedDecoder, headEnd } from './h1-wire.ts'

/**
 * Follows the requests on one client connection from the bytes alone, to know when a request head
 * is being read: from the connection's first byte (or its accept) and from the first byte of each
 * later head, until that head's blank line. Bodies are skipped by Content-Length or chunked coding.
 * Anything it cannot follow (an upgrade, CONNECT, a head it cannot parse) ends the watching: the
 * server behind it answers such requests itself.
 */
export class RequestHeads {
  #state: 'between' | 'head' | 'length' | 'chunked' | 'done' = 'head'
  #head: Uint8Array | undefined
  #remaining = 0
  #chunked: ChunkedDecoder | undefined
  /** Calls back when a head starts (true) and when it is complete or no longer watched (false). */
  readonly #reading: (inHead: boolean) => void

  constructor(reading: (inHead: boolean) => void) {
    this.#reading = reading
  }

  /** Whether a head is being read now: the deadline runs. */
  get inHead(): boolean {
    return this.#state === 'head'
  }

  feed(chunk: Uint8Array): void {
    let at = 0
    while (at < chunk.length && this.#state !== 'done') {
      switch (this.#state) {
        case 'between':
          // Blank lines before a request line are allowed (RFC 9112 §2.2).
          if (chunk[at] === 13 || chunk[at] === 10) {
            at++
            continue
          }
          this.#state = 'head'
          this.#reading(true)
          continue
        case 'head':
          at = this.#readHead(chunk, at)
          continue
        case 'length': {
          const take = Math.min(this.#remaining, chunk.length - at)
          this.#remaining -= take
          at += take
          if (this.#remaining === 0) this.#state = 'between'
          continue
        }
        case 'chunked': {
          let used: number
          try {
            used = this.#chunked!.push(chunk.subarray(at), () => {})
          } catch {
            return void this.#stop(0) // malformed: the server refuses it itself
          }
          if (used === -1) return
          at += used
          this.#state = 'between'
          continue
        }
      }
    }
  }

  #readHead(chunk: Uint8Array, at: number): number {
    const previous = this.#head
    const rest = chunk.subarray(at)
    let bytes = rest
    if (previous !== undefined) {
      bytes = new Uint8Array(previous.length + rest.length)
      bytes.set(previous)
      bytes.set(rest, previous.length)
    }
    let end: number
    try {
      end = headEnd(bytes, previous === undefined ? 0 : previous.length - 3)
    } catch {
      return this.#stop(chunk.length) // over 64 KiB: the server refuses it (431) itself
    }
    if (end === -1) {
      this.#head = bytes === rest ? rest.slice() : bytes
      return chunk.length
    }
    this.#head = undefined
    this.#state = 'between'
    this.#reading(false)
    const consumed = end - (previous?.length ?? 0)
    this.#frame(new TextDecoder('latin1').decode(bytes.subarray(0, end)))
    return at + consumed
  }

  #frame(head: string): void {
    const lines = head.split('\r\n')
    if (/^CONNECT /i.test(lines[0] ?? '')) return void this.#stop(0)
    let length = 0
    let chunked = false
    for (const line of lines) {
      const colon = line.indexOf(':')
      if (colon <= 0) continue
      const name = line.slice(0, colon).trim().toLowerCase()
      const value = line.slice(colon + 1).trim()
      if (name === 'upgrade') return void this.#stop(0)
      if (name === 'transfer-encoding') chunked = /chunked\s*$/i.test(value)
      else if (name === 'content-length') length = /^\d+$/.test(value) ? Number(value) : Number.NaN
    }
    if (chunked) {
      this.#chunked = new ChunkedDecoder()
      this.#state = 'chunked'
    } else if (Number.isNaN(length)) this.#stop(0)
    else {
      this.#remaining = length
      this.#state = length > 0 ? 'length' : 'between'
    }
  }

  #stop(at: number): number {
    if (this.#state === 'head') this.#reading(false)
    this.#state = 'done'
    return at
  }
}
