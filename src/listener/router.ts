import { expectedGot } from '../core/config-error.ts'
import type { Conversion } from '../core/units.ts'

const PARAMETER = /^:[a-z_][a-z0-9_]*$/i

export const PATH_EXAMPLE = 'a path like "/orders", "/api/*" or "/users/:id"'

/** A route path pattern as the file spells it, or what is wrong with it; [[routes]] path and authz rules' paths. */
export function toRoutePath(path: string): Conversion<string> {
  const reject = (expected: string): Conversion<string> => ({ problem: expectedGot(expected, path) })
  if (!path.startsWith('/')) return reject(`${PATH_EXAMPLE}, starting with "/"`)
  if (/[?#\s]/.test(path)) return reject(`${PATH_EXAMPLE}, without query, fragment or spaces`)
  const segments = path.slice(1).split('/')
  for (const [index, segment] of segments.entries()) {
    const last = index === segments.length - 1
    if (segment.includes('*') && !(segment === '*' && last)) return reject(`${PATH_EXAMPLE}, with "*" only as the whole last segment`)
    if (segment === '' && !last) return reject(`${PATH_EXAMPLE}, without empty segments`)
    if (segment.startsWith(':') && !PARAMETER.test(segment)) return reject(`${PATH_EXAMPLE}, with parameters named by letters, digits and "_"`)
  }
  return { value: path }
}

export type PathMatcher = (path: string) => boolean

/** "/x" exact, "/x/*" the prefix and everything below it, ":name" one segment; compiled once at load. */
export function compilePath(pattern: string): PathMatcher {
  if (pattern === '/*') return () => true
  const wildcard = pattern.endsWith('/*')
  const base = wildcard ? pattern.slice(0, -2) : pattern
  if (!base.includes('/:')) {
    if (!wildcard) return (path) => path === base
    const below = `${base}/`
    return (path) => path === base || path.startsWith(below)
  }
  const source = base
    .split('/')
    .map((segment) => (segment.startsWith(':') ? '[^/]+' : escapeRegExp(segment)))
    .join('/')
  const regex = new RegExp(`^${source}${wildcard ? '(?:/.*)?' : ''}$`)
  return (path) => regex.test(path)
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

export interface RequestFacts {
  method: string
  host: string | null // lower-case, port removed
  path: string
  headers: Headers
}

export interface CompiledRoute<T> {
  matches(facts: RequestFacts): boolean
  target: T
}

/** What a route matches, as config/ normalizes it: path pattern, methods (upper-case), host and headers (lower-case). */
export interface RouteMatch {
  name: string
  path: string
  methods?: readonly string[]
  host?: string
  headers?: ReadonlyArray<readonly [name: string, value: string]>
}

export function compileRoute<T>(route: RouteMatch, target: T): CompiledRoute<T> {
  const matchPath = compilePath(route.path)
  const methods = route.methods ? new Set(route.methods) : undefined
  const matchHost = route.host === undefined ? undefined : compileHost(route.host)
  const headers = route.headers
  return {
    target,
    matches(facts) {
      if (methods !== undefined && !methods.has(facts.method)) return false
      if (matchHost !== undefined && !matchHost(facts.host)) return false
      if (!matchPath(facts.path)) return false
      if (headers !== undefined) {
        for (const [name, value] of headers) if (facts.headers.get(name) !== value) return false
      }
      return true
    },
  }
}

/**
 * An exact host, or "*.example.com": any name ending in ".example.com", however many labels deep, but
 * not example.com itself (Envoy's suffix wildcard).
 */
function compileHost(host: string): (requested: string | null) => boolean {
  if (!host.startsWith('*.')) return (requested) => requested === host
  const suffix = host.slice(1)
  return (requested) => requested !== null && requested.length > suffix.length && requested.endsWith(suffix)
}

/** Routes are tried in file order; the first match wins. */
export function firstMatch<T>(routes: readonly CompiledRoute<T>[], facts: RequestFacts): T | undefined {
  for (const route of routes) if (route.matches(facts)) return route.target
  return undefined
}

/** "Example.com:8080" -> "example.com"; "[::1]:80" -> "::1". */
export function hostWithoutPort(authority: string | null): string | null {
  if (authority === null || authority === '') return null
  const lower = authority.toLowerCase()
  if (lower.startsWith('[')) {
    const end = lower.indexOf(']')
    return end === -1 ? lower : lower.slice(1, end)
  }
  const colon = lower.indexOf(':')
  return colon === -1 ? lower : lower.slice(0, colon)
}
