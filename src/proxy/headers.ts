/** RFC 9110 §7.6.1 connection-specific headers, plus the non-standard ones proxies traditionally drop. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
])

/** Host comes from the endpoint's URL; Expect is answered by our own server, never relayed. */
const NOT_FORWARDED_UPSTREAM = new Set([...HOP_BY_HOP, 'host', 'expect'])

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/

/** Header names listed in Connection are hop-by-hop for this message only. */
function namedInConnection(headers: Headers): Set<string> | undefined {
  const value = headers.get('connection')
  if (value === null) return undefined
  let named: Set<string> | undefined
  for (const part of value.split(',')) {
    const name = part.trim().toLowerCase()
    if (name !== '' && TOKEN.test(name)) (named ??= new Set()).add(name)
  }
  return named
}

function copyWithout(source: Headers, drop: Set<string>, target: Headers): void {
  const named = namedInConnection(source)
  for (const [name, value] of source) {
    if (drop.has(name) || named?.has(name)) continue
    target.append(name, value)
  }
}

export interface ForwardedFor {
  clientAddress: string
  proto: string
  host: string | null
  requestId: string
}

export const VIA = '1.1 pillion'

/** The headers the upstream sees: the client's end-to-end headers plus what a proxy owes it. */
export function upstreamRequestHeaders(incoming: Headers, forwarded: ForwardedFor): Headers {
  const headers = new Headers()
  copyWithout(incoming, NOT_FORWARDED_UPSTREAM, headers)
  const priorFor = incoming.get('x-forwarded-for')
  headers.set('x-forwarded-for', priorFor ? `${priorFor}, ${forwarded.clientAddress}` : forwarded.clientAddress)
  headers.set('x-forwarded-proto', forwarded.proto)
  if (forwarded.host !== null) headers.set('x-forwarded-host', forwarded.host)
  const priorVia = incoming.get('via')
  headers.set('via', priorVia ? `${priorVia}, ${VIA}` : VIA)
  headers.set('x-request-id', forwarded.requestId)
  return headers
}

/** The headers the client sees: the upstream's end-to-end headers, bytes untouched (never decoded). */
export function downstreamResponseHeaders(upstream: Headers, requestId: string): Headers {
  const headers = new Headers()
  copyWithout(upstream, HOP_BY_HOP, headers)
  headers.set('x-request-id', requestId)
  return headers
}
