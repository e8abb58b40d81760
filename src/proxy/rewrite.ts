import { GatewayError } from '../core/errors.ts'

/** [routes] rewrite: how the path sent upstream differs from the one the route matched (after strip_prefix). */
export interface PathRewrite {
  /** Put in front of the path: "/v2" makes "/orders" "/v2/orders". */
  prefix?: string
  /** A regular expression on the path and its replacement, with $1… for its groups. */
  regex?: { pattern: string; replacement: string }
}

/** A segment "." or "..", raw or percent-encoded: what a rewrite must never produce. */
const DOT_SEGMENT = /(?:^|\/)(?:\.|%2e){1,2}(?:\/|$)/i

/**
 * The rewrite compiled once per route. The path it gets is already normalized; the result is checked
 * again only where a regular expression could have made a dot segment or left the root.
 */
export function compileRewrite(rewrite: PathRewrite): (path: string) => string {
  const prefix = rewrite.prefix === undefined || rewrite.prefix === '/' ? '' : rewrite.prefix.replace(/\/+$/, '')
  const regex = rewrite.regex === undefined ? undefined : new RegExp(rewrite.regex.pattern)
  const replacement = rewrite.regex?.replacement ?? ''
  return function rewritePath(path) {
    let result = path
    if (regex !== undefined) {
      result = result.replace(regex, replacement)
      if (!result.startsWith('/') || DOT_SEGMENT.test(result) || /[?#]/.test(result)) {
        throw new GatewayError('bad_request', 'the route rewrites this path into one it may not send upstream')
      }
    }
    return prefix === '' ? result : result === '/' ? `${prefix}/` : `${prefix}${result}`
  }
}
