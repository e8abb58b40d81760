/** Where an upstream URL's requests go, parsed once per origin rather than once per request. */
export interface UpstreamOrigin {
  /** The pool key: scheme, host and port. */
  origin: string
  https: boolean
  /** The Host header. */
  host: string
  hostname: string
  port: number
}

export interface UpstreamTarget {
  at: UpstreamOrigin
  /** Path and query, as sent on the request line. */
  path: string
}

const origins = new Map<string, UpstreamOrigin>()
/** Endpoints are few, but discovery can bring new ones for ever: the cache starts over past this. */
const MOST_ORIGINS = 1024

/** Bytes the URL parser would percent-encode in a path or a query, and the fragment mark. */
const PARSER_WOULD_CHANGE = /[^\x21-\x7e]|["#<>`{}\\'^|]/
/** A dot segment, plain or percent-encoded, that the URL parser would resolve. */
const DOT_SEGMENT = /\/(\.|%2e)/i

function originOf(url: URL): UpstreamOrigin {
  const https = url.protocol === 'https:'
  return { origin: url.origin, https, host: url.host, hostname: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || (https ? 443 : 80)) }
}

/**
 * The same split `new URL(href)` gives (origin, pathname + search), without parsing the whole URL
 * per request: the origin part is looked up, and the rest taken as it is when the parser would
 * leave it unchanged (no byte it encodes, no dot segment, no empty query); anything else is parsed.
 */
export function upstreamTarget(href: string): UpstreamTarget {
  const pathStart = href.indexOf('/', href.indexOf('://') + 3)
  const path = pathStart === -1 ? '' : href.slice(pathStart)
  const known = pathStart === -1 ? undefined : origins.get(href.slice(0, pathStart))
  if (known !== undefined && !PARSER_WOULD_CHANGE.test(path) && !DOT_SEGMENT.test(path) && !path.endsWith('?')) return { at: known, path }
  const url = new URL(href)
  const at = originOf(url)
  // Remembered only where the split at the first slash is exactly the parser's.
  if (pathStart !== -1 && href.slice(0, pathStart) + url.pathname + url.search === href) {
    if (origins.size >= MOST_ORIGINS) origins.clear()
    origins.set(href.slice(0, pathStart), at)
  }
  return { at, path: url.pathname + url.search }
}
