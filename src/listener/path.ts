/**
 * Request path normalization, done once per request before route matching; the result is both what
 * routes and policies match and what the upstream is sent, so the two can never disagree.
 *
 * The runtime's URL parser (WHATWG) has already turned "\" into "/", resolved "." and ".." segments
 * including their %2e spellings, and percent-encoded control characters, spaces and non-ASCII.
 * On top of that:
 *
 * 1. Percent-encodings are checked and made canonical:
 *    - a "%" not followed by two hex digits: rejected;
 *    - an encoded "/" or "\" (%2F, %5C): rejected, since a service that decodes it would see a
 *      different path than the one matched (Envoy's path_with_escaped_slashes_action = REJECT);
 *    - an encoded control character or NUL (%00-%1F, %7F): rejected;
 *    - an encoded "%" followed by two hex digits ("%252e"): rejected, as double encoding exists
 *      only to get past one decoder and be decoded by the next;
 *    - encoded bytes that are not valid UTF-8 (overlong "%C0%AE" and the like): rejected;
 *    - an encoded unreserved character (RFC 3986 ALPHA DIGIT - . _ ~) is decoded: "/%61dmin" is
 *      "/admin" (RFC 3986 §6.2.2.2);
 *    - every other encoding is kept, with upper-case hex (§6.2.2.1).
 * 2. Empty segments are dropped ("//" becomes "/"), "." and ".." segments are resolved again (an
 *    encoded dot decoded in step 1 can make a new one), never above the root. A trailing "/" stays.
 * 3. A ";" or "%3B" anywhere in the path: rejected. Tomcat and Jetty drop path parameters, so for
 *    them "/admin;x/y" is "/admin/y" and "/api/..;/admin" is "/admin", whatever we matched.
 *
 * The rejections follow Spring Security's StrictHttpFirewall, which refuses the same spellings for
 * the same reason; where it refuses "//", "./" and "%2e" we normalize them instead.
 *
 * Case is left alone: paths are case-sensitive (RFC 3986), as routes are. The listener refuses a
 * path whose route would differ if case were ignored (see route-case.ts).
 */

export class PathProblem {
  readonly reason: string
  constructor(reason: string) {
    this.reason = reason
  }
}

/** Anything that could need work; most paths have none of it and come back unchanged. */
const NEEDS_WORK = /%|\/\/|\/\.|;|\\/

const UNRESERVED = /[A-Za-z0-9\-._~]/
const HEX = '0123456789ABCDEF'
const utf8 = new TextDecoder('utf-8', { fatal: true })

export function normalizePath(pathname: string): string | PathProblem {
  if (!NEEDS_WORK.test(pathname)) return pathname
  if (pathname.includes('\\')) return new PathProblem('a backslash in the path')
  if (/;|%3b/i.test(pathname)) return new PathProblem('a ";" (path parameters, which some servers drop)')
  const decoded = canonicalEncoding(pathname)
  if (decoded instanceof PathProblem) return decoded
  return resolveSegments(decoded)
}

function hexValue(code: number): number {
  if (code >= 48 && code <= 57) return code - 48
  const lower = code | 0x20
  if (lower >= 97 && lower <= 102) return lower - 87
  return -1
}

function canonicalEncoding(path: string): string | PathProblem {
  if (!path.includes('%')) return path
  let out = ''
  let run: number[] = []
  const endRun = (): PathProblem | undefined => {
    if (run.length === 0) return undefined
    try {
      utf8.decode(Uint8Array.from(run))
    } catch {
      return new PathProblem('percent-encoded bytes that are not UTF-8')
    }
    run = []
    return undefined
  }
  for (let i = 0; i < path.length; i++) {
    const char = path[i]!
    if (char !== '%') {
      const problem = endRun()
      if (problem) return problem
      out += char
      continue
    }
    const high = hexValue(path.charCodeAt(i + 1))
    const low = hexValue(path.charCodeAt(i + 2))
    if (high === -1 || low === -1) return new PathProblem('a "%" not followed by two hex digits')
    const byte = high * 16 + low
    i += 2
    if (byte >= 0x80) {
      run.push(byte)
      out += `%${HEX[high]}${HEX[low]}`
      continue
    }
    const problem = endRun()
    if (problem) return problem
    if (byte === 0x2f || byte === 0x5c) return new PathProblem('an encoded "/" or "\\" (%2F, %5C)')
    if (byte < 0x20 || byte === 0x7f) return new PathProblem('an encoded control character or NUL')
    const decodedChar = String.fromCharCode(byte)
    out += UNRESERVED.test(decodedChar) ? decodedChar : `%${HEX[high]}${HEX[low]}`
  }
  const problem = endRun()
  if (problem) return problem
  // Checked on the result: "%25%41%41" becomes "%25AA" once its unreserved "A"s are decoded.
  if (DOUBLE_ENCODED.test(out)) return new PathProblem('double percent-encoding ("%25" before two hex digits)')
  return out
}

const DOUBLE_ENCODED = /%25[0-9A-Fa-f]{2}/

function resolveSegments(path: string): string | PathProblem {
  const input = path.split('/')
  const output: string[] = []
  let trailingSlash = false
  for (let i = 1; i < input.length; i++) {
    const segment = input[i]!
    const last = i === input.length - 1
    if (segment === '' || segment === '.') {
      trailingSlash = last
    } else if (segment === '..') {
      output.pop()
      trailingSlash = last
    } else {
      output.push(segment)
      trailingSlash = false
    }
  }
  if (output.length === 0) return '/'
  return `/${output.join('/')}${trailingSlash ? '/' : ''}`
}
