import type { RouteMatch } from './router.ts'

/**
 * Whether every request `later` matches is matched by `earlier` too, so that `later`, tried after
 * it, can never be chosen. Decided from the patterns alone, the way the router reads them: methods,
 * host, headers and path. It may miss a cover (it never claims one that is not).
 */
export function routeCovers(earlier: RouteMatch, later: RouteMatch): boolean {
  return methodsCover(earlier.methods, later.methods) && hostCovers(earlier.host, later.host) && headersCover(earlier.headers, later.headers) && pathCovers(earlier.path, later.path)
}

function methodsCover(earlier: readonly string[] | undefined, later: readonly string[] | undefined): boolean {
  if (earlier === undefined) return true
  return later !== undefined && later.every((method) => earlier.includes(method))
}

/** An exact host covers itself; "*.example.com" covers any name, or wildcard, below example.com. */
function hostCovers(earlier: string | undefined, later: string | undefined): boolean {
  if (earlier === undefined) return true
  if (later === undefined) return false
  if (earlier === later) return true
  if (!earlier.startsWith('*.')) return false
  const suffix = earlier.slice(1)
  const name = later.startsWith('*.') ? later.slice(1) : later
  return name.length > suffix.length && name.endsWith(suffix)
}

/** Each header the earlier route requires, the later requires with the same value. */
function headersCover(earlier: RouteMatch['headers'], later: RouteMatch['headers']): boolean {
  if (earlier === undefined) return true
  return earlier.every(([name, value]) => later?.some(([otherName, otherValue]) => otherName === name && otherValue === value) === true)
}

function pathCovers(earlier: string, later: string): boolean {
  if (earlier === '/*') return true
  const earlierWildcard = earlier.endsWith('/*')
  const laterWildcard = later.endsWith('/*')
  const earlierSegments = (earlierWildcard ? earlier.slice(0, -2) : earlier).split('/')
  const laterSegments = (laterWildcard ? later.slice(0, -2) : later).split('/')
  if (earlierWildcard ? laterSegments.length < earlierSegments.length : laterWildcard || laterSegments.length !== earlierSegments.length) return false
  // A parameter covers any one segment, a parameter included; a literal covers only itself.
  return earlierSegments.every((segment, i) => segment.startsWith(':') ? laterSegments[i] !== '' : segment === laterSegments[i])
}
