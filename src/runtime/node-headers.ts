import { COPY_HEADERS, DELETE_HEADERS } from '../core/headers-copy.ts'

/**
 * Headers kept as a plain list, for Node: undici's Headers pays for webidl conversions, a Map and a
 * sorted copy on every read, write and iteration (about a tenth of a proxied request's CPU). This
 * one behaves as undici's does where the core can tell (lower-case names, a name's values joined
 * by ", " or "; " for Cookie, Set-Cookie kept apart, sorted iteration, the same TypeErrors) and
 * passes `instanceof Headers`, as @hono/node-server's own lightweight request headers do.
 */
export class NodeHeaders {
  /** Lower-case names and their values, in arrival order; a name may repeat. */
  #names: string[]
  #values: string[]

  constructor(names: string[] = [], values: string[] = []) {
    this.#names = names
    this.#values = values
  }

  /** A request's headers from node:http's rawHeaders, whose parser has validated and trimmed them already. */
  static fromRaw(raw: readonly string[]): NodeHeaders {
    const names: string[] = []
    const values: string[] = []
    for (let i = 0; i < raw.length; i += 2) {
      names.push(raw[i]!.toLowerCase())
      values.push(raw[i + 1]!)
    }
    return new NodeHeaders(names, values)
  }

  /**
   * An answer's headers as undici parsed them (lower-case names; an array for a repeated one), checked as append would;
   * node:http2's header objects are alike, with pseudo-headers (":status", ":path", …), which `skipPseudo` leaves out.
   */
  static fromParsed(parsed: Record<string, string | string[] | undefined>, skipPseudo = false): NodeHeaders {
    const headers = new NodeHeaders()
    for (const name in parsed) {
      if (skipPseudo && name.charCodeAt(0) === 58) continue
      const value = parsed[name]
      if (typeof value === 'string') headers.append(name, value)
      else if (value !== undefined) for (const one of value) headers.append(name, one)
    }
    return headers
  }

  [COPY_HEADERS](): NodeHeaders {
    return new NodeHeaders(this.#names.slice(), this.#values.slice())
  }

  /** Deletes every name in the set (lower-case, as the core's lists are) in one pass. */
  [DELETE_HEADERS](drop: ReadonlySet<string>): void {
    this.#remove(drop, 0)
  }

  get(name: string): string | null {
    return this.#joined(checkedName(name, 'Headers.get'))
  }

  /** A name's values joined as get() joins them, for a name already checked and lower-cased. */
  #joined(lower: string): string | null {
    const names = this.#names
    let value: string | null = null
    for (let i = 0; i < names.length; i++) {
      if (names[i] !== lower) continue
      value = value === null ? this.#values[i]! : value + (lower === 'cookie' ? '; ' : ', ') + this.#values[i]!
    }
    return value
  }

  has(name: string): boolean {
    return this.#names.includes(checkedName(name, 'Headers.has'))
  }

  getSetCookie(): string[] {
    const cookies: string[] = []
    for (let i = 0; i < this.#names.length; i++) if (this.#names[i] === 'set-cookie') cookies.push(this.#values[i]!)
    return cookies
  }

  append(name: string, value: string): void {
    const [lower, checked] = checkedField(name, value, 'Headers.append')
    this.#names.push(lower)
    this.#values.push(checked)
  }

  set(name: string, value: string): void {
    const [lower, checked] = checkedField(name, value, 'Headers.set')
    const at = this.#names.indexOf(lower)
    if (at === -1) {
      this.#names.push(lower)
      this.#values.push(checked)
      return
    }
    this.#values[at] = checked
    this.#remove(lower, at + 1)
  }

  delete(name: string): void {
    const lower = checkedName(name, 'Headers.delete')
    const at = this.#names.indexOf(lower)
    if (at !== -1) this.#remove(lower, at)
  }

  /** Removes every entry of a name (or of the names in a set) from `from` on. */
  #remove(drop: string | ReadonlySet<string>, from: number): void {
    const names = this.#names
    const values = this.#values
    let kept = from
    for (let i = from; i < names.length; i++) {
      if (typeof drop === 'string' ? names[i] === drop : drop.has(names[i]!)) continue
      names[kept] = names[i]!
      values[kept] = values[i]!
      kept++
    }
    names.length = kept
    values.length = kept
  }

  /**
   * What iteration yields, as one flat list: names sorted, a repeated name's values joined (each
   * Set-Cookie on its own), as undici's Headers iterates. The upstream client sends it as it is.
   */
  flat(): string[] {
    const names = this.#names
    const values = this.#values
    const count = names.length
    const flat: string[] = []
    if (count === 0) return flat
    const order = sortedOrder(names)
    for (let k = 0; k < count; ) {
      const first = order[k]!
      const name = names[first]!
      let value = values[first]!
      // A name's entries sit together in the order, in arrival order among themselves (the sort is stable).
      for (k++; k < count && names[order[k]!] === name; k++) {
        if (name === 'set-cookie') {
          flat.push(name, value)
          value = values[order[k]!]!
        } else value += (name === 'cookie' ? '; ' : ', ') + values[order[k]!]!
      }
      flat.push(name, value)
    }
    return flat
  }

  entries(): IterableIterator<[string, string]> {
    const flat = this.flat()
    const pairs: [string, string][] = []
    for (let i = 0; i < flat.length; i += 2) pairs.push([flat[i]!, flat[i + 1]!])
    return pairs[Symbol.iterator]()
  }

  keys(): IterableIterator<string> {
    return Array.from(this.entries(), ([name]) => name)[Symbol.iterator]()
  }

  values(): IterableIterator<string> {
    return Array.from(this.entries(), ([, value]) => value)[Symbol.iterator]()
  }

  forEach(callback: (value: string, name: string, headers: Headers) => void, thisArg?: unknown): void {
    for (const [name, value] of this.entries()) callback.call(thisArg, value, name, this as unknown as Headers)
  }

  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.entries()
  }
}
Object.setPrototypeOf(NodeHeaders.prototype, Headers.prototype)

/**
 * The entries' indexes with their names in code unit order (undici's iteration order), arrival order
 * kept among equal names: an insertion sort, since a request has a dozen or so headers, often
 * nearly in order already.
 */
function sortedOrder(names: readonly string[]): number[] {
  const order: number[] = [0]
  for (let i = 1; i < names.length; i++) {
    const name = names[i]!
    let at = i
    while (at > 0 && names[order[at - 1]!]! > name) {
      order[at] = order[at - 1]!
      at--
    }
    order[at] = i
  }
  return order
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
const NOT_BYTE = /[^\x00-\xff]/
const FORBIDDEN_IN_VALUE = /[\0\r\n]/
const PLAIN_VALUE = /^(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?$/
const EDGE_WHITESPACE = /^[\t\n\r ]+|[\t\n\r ]+$/g

/**
 * Names already found to be tokens, and their lower case. The core asks for the same few names on
 * every request (20 deletes and sets for one proxied request), most of them constants: a map lookup
 * instead of a regular expression and a lower-casing each time. Bounded, since a name can come
 * from a client.
 */
const CHECKED_NAMES = new Map<string, string>()
const MAX_CHECKED_NAMES = 1024

/** The lower-case name, or undici's TypeError for one that is not a token. */
function checkedName(name: string, prefix: string): string {
  if (typeof name !== 'string') name = String(name)
  const known = CHECKED_NAMES.get(name)
  if (known !== undefined) return known
  if (TOKEN.test(name)) return remembered(name)
  byteString(name)
  throw new TypeError(`${prefix}: "${name}" is an invalid header name.`)
}

function remembered(name: string): string {
  const lower = name.toLowerCase()
  if (CHECKED_NAMES.size < MAX_CHECKED_NAMES) CHECKED_NAMES.set(name, lower)
  return lower
}

/** The lower-case name and the value without edge whitespace, or undici's TypeError, checked in undici's order. */
function checkedField(name: string, value: string, prefix: string): [string, string] {
  if (typeof name !== 'string') name = String(name)
  if (typeof value !== 'string') value = String(value)
  const known = CHECKED_NAMES.get(name)
  const valid = known !== undefined || TOKEN.test(name)
  // Nearly every value: nothing to trim, nothing to refuse.
  if (valid && PLAIN_VALUE.test(value)) return [known ?? remembered(name), value]
  if (!valid) byteString(name)
  byteString(value)
  const trimmed = value.replace(EDGE_WHITESPACE, '')
  if (!valid) throw new TypeError(`${prefix}: "${name}" is an invalid header name.`)
  if (FORBIDDEN_IN_VALUE.test(trimmed)) throw new TypeError(`${prefix}: "${trimmed}" is an invalid header value.`)
  return [name.toLowerCase(), trimmed]
}

function byteString(text: string): void {
  const at = text.search(NOT_BYTE)
  if (at !== -1) {
    throw new TypeError(`Cannot convert argument to a ByteString because the character at index ${at} has a value of ${text.charCodeAt(at)} which is greater than 255.`)
  }
}
