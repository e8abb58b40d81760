/**
 * Request hygiene, checked before routing: requests that one parser could read differently from
 * another (request smuggling, RFC 9112 §6.3 and §11.2) are refused with 400 instead of being
 * passed on for the upstream's parser to guess at. Most malformed requests (CR, LF or NUL in a
 * header, a space before the colon, obs-fold) never get this far: each runtime's HTTP parser
 * rejects them. These are the ones that can reach a handler.
 */

const DIGITS = /^\d+$/
/** uri-host [":" port] (RFC 3986): a reg-name or IPv4 address, or an IP literal in brackets. */
const HOST = /^(?:[\w.~!$&'()*+;=%-]*|\[[\dA-Fa-f:.]+\])(?::\d*)?$/

/** The methods fetch upper-cases whatever their spelling (Fetch standard, "normalize a method"). */
const NORMALIZED_BY_FETCH = new Set(['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT'])
/** Checked first, so that nearly every request is passed without upper-casing its method. */
const COMMON_METHODS = new Set([...NORMALIZED_BY_FETCH, 'PATCH'])

/** Why the request must be refused, or undefined when it is fine. */
export function requestProblem(method: string, headers: Headers): string | undefined {
  // Methods are case-sensitive, and "get" is not GET; but every upstream client would send it as
  // GET. Node's and Bun's parsers refuse such spellings outright; Deno's lets them through.
  if (!COMMON_METHODS.has(method) && NORMALIZED_BY_FETCH.has(method.toUpperCase())) return `the method ${JSON.stringify(method)}, another spelling of ${method.toUpperCase()}`
  const contentLength = headers.get('content-length')
  const transferEncoding = headers.get('transfer-encoding')
  if (contentLength !== null) {
    if (transferEncoding !== null) return 'both Content-Length and Transfer-Encoding'
    if (!DIGITS.test(contentLength)) {
      // Repeated headers arrive joined by ", ". RFC 9110 §8.6 lets a recipient accept identical
      // copies, but the upstream would be sent the joined list, so every repeat is refused.
      const values = contentLength.split(',').map((value) => value.trim())
      if (values.length > 1 && values.every((value) => DIGITS.test(value))) {
        return values.every((value) => value === values[0]) ? 'a repeated Content-Length header' : 'conflicting Content-Length headers'
      }
      return 'a Content-Length that is not a number'
    }
  }
  // HTTP/1.1 requests may only be chunked; anything else (gzip, "chunked, identity", "xchunked")
  // is a transfer coding some parsers skip and others honour.
  if (transferEncoding !== null && transferEncoding.trim().toLowerCase() !== 'chunked') {
    return 'a Transfer-Encoding other than "chunked"'
  }
  const host = headers.get('host')
  if (host !== null) {
    if (host.includes(',')) return 'more than one Host header'
    // RFC 9112 §3.2: a Host that is not a host[:port] gets 400. Node and Bun refuse it themselves.
    if (!HOST.test(host)) return 'a Host header that is not a host name or address with an optional port'
  }
  // Symfony, Zend and IIS's URL Rewrite route by these instead of the request line: a request
  // matched as /public could be served as whatever path they name.
  if (headers.has('x-original-url') || headers.has('x-rewrite-url')) return 'an X-Original-URL or X-Rewrite-URL header'
  return undefined
}
