import { copyHeaders, deleteHeaders } from '../core/headers-copy.ts'
import { connectionNames, HOP_BY_HOP, LOWER_TOKEN } from '../core/hop-by-hop.ts'
import type { HeaderFields } from '../core/host.ts'
import type { UpstreamHeaderEdit } from './exchange.ts'

/** Host comes from the endpoint's URL; Expect is answered by our own server, never relayed. */
const NOT_FORWARDED_UPSTREAM: ReadonlySet<string> = new Set([...HOP_BY_HOP, 'host', 'expect'])

/**
 * A copy without the given headers, nor those the message's Connection header names (hop-by-hop
 * for this message only). Copying natively and deleting a few names is about 2.5x cheaper on Bun
 * than appending header by header.
 */
function copyWithout(source: Headers, drop: ReadonlySet<string>): Headers {
  return deleteHopByHop(copyHeaders(source), drop)
}

function deleteHopByHop(headers: Headers, drop: ReadonlySet<string>): Headers {
  const connection = headers.get('connection')
  deleteHeaders(headers, drop)
  if (connection !== null) for (const name of connectionNames(connection)) if (!drop.has(name)) headers.delete(name)
  return headers
}

export interface ForwardedFor {
  clientAddress: string
  proto: string
  host: string | null
  requestId: string
}

export const VIA = '1.1 pillion'

/**
 * The fields upstreamRequestHeaders gives, read straight off the client's headers: get and forEach
 * answer as that Headers would, in the same order, without copying, deleting and setting natively
 * (3–6% of the binary's user-space instructions on a bare route). `toHeaders` builds the real one.
 */
export class ForwardedFields implements HeaderFields {
  readonly #incoming: Headers
  readonly #forwarded: ForwardedFor
  /** What a proxy adds, by name in ascending order (as Headers iterate): names and values in turn. */
  readonly #added: string[]
  /** Names the client's Connection header lists, lower-case: hop-by-hop for this message. */
  readonly #connectionNamed: readonly string[] | undefined
  /** The layers' edits (fieldOverrides): no client field of these names goes through. */
  readonly #overrides: ReadonlyMap<string, string | null> | undefined

  constructor(incoming: Headers, forwarded: ForwardedFor, overrides?: ReadonlyMap<string, string | null>) {
    this.#incoming = incoming
    this.#forwarded = forwarded
    this.#overrides = overrides
    const priorFor = incoming.get('x-forwarded-for')
    const priorVia = incoming.get('via')
    const added = ['via', priorVia ? `${priorVia}, ${VIA}` : VIA, 'x-forwarded-for', priorFor ? `${priorFor}, ${forwarded.clientAddress}` : forwarded.clientAddress]
    if (forwarded.host !== null) added.push('x-forwarded-host', forwarded.host)
    added.push('x-forwarded-proto', forwarded.proto, 'x-request-id', forwarded.requestId)
    if (overrides !== undefined) override(added, overrides)
    this.#added = added
    const connection = incoming.get('connection')
    this.#connectionNamed = connection === null ? undefined : connectionNames(connection)
  }

  get(name: string): string | null {
    const value = this.#incoming.get(name)
    const lower = name.toLowerCase()
    const added = this.#added
    for (let i = 0; i < added.length; i += 2) if (added[i] === lower) return added[i + 1]!
    return this.#dropped(lower) ? null : value
  }

  forEach(visit: (value: string, name: string, parent: Headers) => void): void {
    const added = this.#added
    const incoming = this.#incoming
    let next = 0
    let cookiesLast: string[] | undefined
    incoming.forEach((value, name) => {
      if (name === 'set-cookie' && SET_COOKIE_LAST) return void (cookiesLast ??= []).push(value)
      while (next < added.length && added[next]! < name) {
        visit(added[next + 1]!, added[next]!, incoming)
        next += 2
      }
      if (next < added.length && added[next] === name) return
      if (!this.#dropped(name)) visit(value, name, incoming)
    })
    for (; next < added.length; next += 2) visit(added[next + 1]!, added[next]!, incoming)
    if (cookiesLast !== undefined && !this.#dropped('set-cookie')) for (const value of cookiesLast) visit(value, 'set-cookie', incoming)
  }

  /** The same fields as a Headers, for a client that needs one (HTTP/2, WebSockets). */
  toHeaders(): Headers {
    const headers = upstreamRequestHeaders(this.#incoming, this.#forwarded)
    if (this.#overrides !== undefined) for (const [name, value] of this.#overrides) value === null ? headers.delete(name) : headers.set(name, value)
    return headers
  }

  #dropped(lower: string): boolean {
    return NOT_FORWARDED_UPSTREAM.has(lower) || (this.#connectionNamed?.includes(lower) ?? false) || (this.#overrides?.has(lower) ?? false)
  }
}

/** Puts each override into `added` (names and values in turn, by name): a value replaces, null removes. */
function override(added: string[], overrides: ReadonlyMap<string, string | null>): void {
  for (const [name, value] of overrides) {
    for (let i = 0; i < added.length; i += 2) {
      if (added[i] !== name) continue
      added.splice(i, 2)
      break
    }
    if (value === null) continue
    let before = 0
    while (before < added.length && added[before]! < name) before += 2
    added.splice(before, 0, name, value)
  }
}

/** A value Headers.set keeps as it is: no NUL, CR or LF, no HTTP whitespace at either end, no code unit above 0xFF. */
const VALUE_KEPT = /^(?:[^\0\t\n\r \u0100-\uffff](?:[^\0\n\r\u0100-\uffff]*[^\0\t\n\r \u0100-\uffff])?)?$/

/**
 * The layers' header edits as ForwardedFields applies them: each name's last edit, a value or null
 * (removed), as applying them one by one to a Headers leaves it. Undefined for an edit beyond that
 * (an 'append', a name not in lower case, a value Headers would change or refuse, a Set-Cookie,
 * which Bun's Headers put last): that request builds its Headers, which normalizes or refuses as before.
 */
export function fieldOverrides(edits: readonly UpstreamHeaderEdit[]): Map<string, string | null> | undefined {
  const overrides = new Map<string, string | null>()
  for (const [name, value, mode] of edits) {
    if (mode === 'append' || !LOWER_TOKEN.test(name) || (value !== null && (!VALUE_KEPT.test(value) || name === 'set-cookie'))) return undefined
    overrides.set(name, value)
  }
  return overrides
}

/** Whether this runtime's Headers iterate Set-Cookie after every other name (Bun's do) rather than in order. */
const SET_COOKIE_LAST = (() => {
  let first = ''
  new Headers([['set-cookie', 'a'], ['z', 'b']]).forEach((_value, name) => (first ||= name))
  return first === 'z'
})()

/** The headers the upstream sees: the client's end-to-end headers plus what a proxy owes it. */
export function upstreamRequestHeaders(incoming: Headers, forwarded: ForwardedFor): Headers {
  const headers = copyWithout(incoming, NOT_FORWARDED_UPSTREAM)
  const priorFor = incoming.get('x-forwarded-for')
  headers.set('x-forwarded-for', priorFor ? `${priorFor}, ${forwarded.clientAddress}` : forwarded.clientAddress)
  headers.set('x-forwarded-proto', forwarded.proto)
  if (forwarded.host !== null) headers.set('x-forwarded-host', forwarded.host)
  const priorVia = incoming.get('via')
  headers.set('via', priorVia ? `${priorVia}, ${VIA}` : VIA)
  headers.set('x-request-id', forwarded.requestId)
  return headers
}

/**
 * Turns an upstream answer's own headers, in place, into the ones the client sees: its end-to-end
 * headers, bytes untouched (never decoded), plus the request id. `endToEnd`: the upstream client
 * left the hop-by-hop ones out already (UpstreamAnswer.endToEnd).
 */
export function toDownstream(headers: Headers, requestId: string, endToEnd = false): Headers {
  if (!endToEnd) deleteHopByHop(headers, HOP_BY_HOP)
  headers.set('x-request-id', requestId)
  return headers
}
