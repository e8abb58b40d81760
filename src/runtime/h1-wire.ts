/**
 * HTTP/1.1 as it travels on the wire for Pillion's own upstream client (h1-client.ts): the request
 * head written out, the answer's head parsed, its body framed by Content-Length, chunked coding or
 * the connection's close (RFC 9112 §6.3).
 */

import { connectionNames, HOP_BY_HOP } from '../core/hop-by-hop.ts'
import type { HeaderFields } from '../core/host.ts'

const encoder = new TextEncoder()

/** Header values are byte strings (Latin-1); most heads are ASCII and take the encoder's fast path. */
export function latin1Bytes(text: string): Uint8Array {
  const utf8 = encoder.encode(text)
  // Only ASCII encodes to one byte per code unit: the check costs nothing beside a scan of the text.
  if (utf8.byteLength === text.length) return utf8
  const bytes = new Uint8Array(text.length)
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i) & 0xff
  return bytes
}

/** How the request body goes out: no body, a known length, or chunked. */
export type RequestFraming = 'none' | 'length' | 'chunked'

/** Methods whose requests carry a body by meaning: without one they say Content-Length: 0 (as undici does). */
const EXPECTS_BODY = new Set(['POST', 'PUT', 'PATCH'])

export function requestHead(method: string, target: string, authority: string, headers: HeaderFields, body: ReadableStream<Uint8Array> | Uint8Array | null): { head: Uint8Array; framing: RequestFraming } {
  let head = `${method} ${target} HTTP/1.1\r\n`
  if (headers.get('host') === null) head += `host: ${authority}\r\n`
  headers.forEach((value, name) => {
    if (name !== 'content-length' && name !== 'transfer-encoding') head += `${name}: ${value}\r\n`
  })
  let framing: RequestFraming
  if (body === null) {
    framing = 'none'
    if (EXPECTS_BODY.has(method)) head += 'content-length: 0\r\n'
  } else if (body instanceof Uint8Array) {
    framing = 'length'
    head += `content-length: ${body.byteLength}\r\n`
  } else {
    const declared = headers.get('content-length')
    framing = declared === null ? 'chunked' : 'length'
    head += declared === null ? 'transfer-encoding: chunked\r\n' : `content-length: ${declared}\r\n`
  }
  return { head: latin1Bytes(`${head}\r\n`), framing }
}

const CRLF = encoder.encode('\r\n')
const LAST_CHUNK = encoder.encode('0\r\n\r\n')

/** One chunk of a chunked request body, as the bytes to write. */
export function chunkFrame(data: Uint8Array): Uint8Array[] {
  return [encoder.encode(`${data.byteLength.toString(16)}\r\n`), data, CRLF]
}

export { LAST_CHUNK }

/** A malformed answer: the upstream does not speak HTTP/1.1 as it must. */
export class ProtocolError extends Error {}

export interface AnswerHead {
  status: number
  statusText: string
  headers: Headers
  /** How the body ends: its length, chunked coding, or the connection's close; 'none' for a bodyless answer. */
  framing: { kind: 'none' } | { kind: 'length'; length: number } | { kind: 'chunked' } | { kind: 'close' }
  /** Whether the connection may carry another request once this answer is read. */
  keepAlive: boolean
}

/** An answer head larger than this is refused (Node's maxHeaderSize is 16 KiB; undici allows as much). */
const MAX_HEAD_BYTES = 64 * 1024
const decoder = new TextDecoder('latin1')
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/i

/** Where the head ends (just past CRLFCRLF) in bytes, or -1. */
export function headEnd(bytes: Uint8Array, from: number): number {
  for (let i = Math.max(3, from); i < bytes.length; i++) {
    if (bytes[i] === 10 && bytes[i - 1] === 13 && bytes[i - 2] === 10 && bytes[i - 3] === 13) return i + 1
  }
  if (bytes.length > MAX_HEAD_BYTES) throw new ProtocolError(`the answer's head is over ${MAX_HEAD_BYTES} bytes`)
  return -1
}

/**
 * The answer's head. Its hop-by-hop fields, and those its Connection header names, are read for the
 * framing and left out of `headers` (RFC 9110 §7.6.1): they belong to this connection, never to the
 * client (UpstreamAnswer.endToEnd).
 */
export function parseHead(bytes: Uint8Array, method: string): AnswerHead {
  const lines = decoder.decode(bytes).split('\r\n')
  const statusLine = STATUS_LINE.exec(lines[0] ?? '')
  if (statusLine === null) throw new ProtocolError(`not an HTTP/1.1 status line: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`)
  const status = Number(statusLine[2])
  const headers = new Headers()
  // The three that frame the answer, joined as Headers.get joins a repeated name, without asking it again.
  let connection: string | null = null
  let transferEncoding: string | null = null
  let contentLength: string | null = null
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!
    if (line === '') continue
    const colon = line.indexOf(':')
    const name = colon > 0 ? line.slice(0, colon) : ''
    const value = withoutHttpWhitespace(line, colon + 1)
    const known = KNOWN_NAME_LENGTHS.has(name.length) ? name.toLowerCase() : ''
    if (known === 'content-length') contentLength = joined(contentLength, value)
    else if (HOP_BY_HOP.has(known)) {
      if (NOT_IN_A_VALUE.test(value)) throw new ProtocolError(`a header value the answer may not carry (${name})`)
      if (known === 'connection') connection = joined(connection, value)
      else if (known === 'transfer-encoding') transferEncoding = joined(transferEncoding, value)
      continue
    }
    // Headers.append checks the name and the value as HTTP does: a refusal says which was wrong.
    try {
      headers.append(name, value)
    } catch {
      throw new ProtocolError(TOKEN.test(name) ? `a header value the answer may not carry (${name})` : `a malformed header line in the answer: ${JSON.stringify(line.slice(0, 80))}`)
    }
  }
  const named = connection === null ? NO_OPTIONS : connectionNames(connection)
  dropConnectionNamed(headers, named)
  // Options are whole tokens: "close-me" is not "close".
  let keepAlive = statusLine[1] === '1' ? !named.includes('close') : named.includes('keep-alive')
  let framing: AnswerHead['framing']
  if (method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200)) framing = NO_BODY
  else if (transferEncoding !== null) {
    framing = CHUNKED_LAST.test(transferEncoding) ? CHUNKED : UNTIL_CLOSE
  } else if (contentLength !== null) framing = { kind: 'length', length: contentLengthOf(contentLength) }
  else framing = UNTIL_CLOSE
  if (framing.kind === 'close') keepAlive = false
  return { status, statusText: statusLine[3] ?? '', headers, framing, keepAlive }
}

/**
 * The text from `start` without HTTP whitespace (tab, space, CR, LF) at either end: a value as
 * Headers.append normalizes it. String.trim would also take bytes such as 0xA0 off a value.
 */
function withoutHttpWhitespace(line: string, start: number): string {
  let end = line.length
  while (start < end && isHttpWhitespace(line.charCodeAt(start))) start++
  while (end > start && isHttpWhitespace(line.charCodeAt(end - 1))) end--
  return line.slice(start, end)
}

const isHttpWhitespace = (code: number): boolean => code === 32 || code === 9 || code === 13 || code === 10

const NO_OPTIONS: readonly string[] = []

/** The names a Connection header lists are hop-by-hop for this message (those in HOP_BY_HOP were never added). */
function dropConnectionNamed(headers: Headers, named: readonly string[]): void {
  for (const name of named) if (!HOP_BY_HOP.has(name)) headers.delete(name)
}

const STATUS_LINE = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/
const CHUNKED_LAST = /(?:^|,)\s*chunked\s*$/i
const DIGITS = /^\d+$/
/** The lengths of the hop-by-hop names and "content-length": other names are not lower-cased to compare. */
const KNOWN_NAME_LENGTHS = new Set([...HOP_BY_HOP, 'content-length'].map((name) => name.length))
/** What Headers.append refuses in a value (WHATWG Fetch), for the hop-by-hop ones it never sees. */
const NOT_IN_A_VALUE = /[\0\r\n]/
const NO_BODY: AnswerHead['framing'] = { kind: 'none' }
const CHUNKED: AnswerHead['framing'] = { kind: 'chunked' }
const UNTIL_CLOSE: AnswerHead['framing'] = { kind: 'close' }

const joined = (previous: string | null, value: string): string => (previous === null ? value : `${previous}, ${value}`)

/** A list of equal values is one length (RFC 9110 §8.6); anything else is an answer we cannot frame. */
function contentLengthOf(declared: string): number {
  if (DIGITS.test(declared)) {
    const length = Number(declared)
    if (Number.isSafeInteger(length)) return length
  } else {
    const values = new Set(declared.split(',').map((value) => value.trim()))
    const only = values.size === 1 ? [...values][0]! : ''
    const length = DIGITS.test(only) ? Number(only) : Number.NaN
    if (Number.isSafeInteger(length)) return length
  }
  throw new ProtocolError(`an invalid Content-Length in the answer: ${JSON.stringify(declared)}`)
}

/**
 * Reads a chunked body as it arrives: data is handed out as it comes, chunk sizes and trailers are
 * taken off. `push` returns how many bytes of the input belonged to the body (the rest is the next
 * answer's, which a well-behaved upstream never sends before being asked) or -1 while not at its end.
 */
export class ChunkedDecoder {
  #state: 'size' | 'data' | 'data-end' | 'trailers' = 'size'
  #remaining = 0
  #line = ''

  push(input: Uint8Array, out: (data: Uint8Array) => void): number {
    let at = 0
    while (at < input.length) {
      if (this.#state === 'data') {
        const take = Math.min(this.#remaining, input.length - at)
        out(input.subarray(at, at + take))
        at += take
        this.#remaining -= take
        if (this.#remaining === 0) this.#state = 'data-end'
        continue
      }
      const newline = input.indexOf(10, at)
      const end = newline === -1 ? input.length : newline + 1
      this.#line += decoder.decode(input.subarray(at, end))
      at = end
      if (newline === -1) {
        if (this.#line.length > 4096) throw new ProtocolError('a chunk line over 4096 bytes in the answer')
        break
      }
      const line = this.#line.replace(/\r?\n$/, '')
      this.#line = ''
      if (this.#state === 'data-end') {
        if (line !== '') throw new ProtocolError('a chunk of the answer is longer than its size says')
        this.#state = 'size'
      } else if (this.#state === 'size') {
        const size = /^([0-9a-f]{1,12})[ \t]*(?:;.*)?$/i.exec(line)
        if (size === null) throw new ProtocolError(`a malformed chunk size in the answer: ${JSON.stringify(line.slice(0, 40))}`)
        this.#remaining = parseInt(size[1]!, 16)
        this.#state = this.#remaining === 0 ? 'trailers' : 'data'
      } else if (line === '') {
        return at
      }
    }
    return -1
  }
}
