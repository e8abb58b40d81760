import { compileRoute, firstMatch, type RequestFacts, type RouteMatch } from './router.ts'

/**
 * Route matching is case-sensitive, as in Envoy and RFC 3986. But many services are not
 * (Windows file systems, some frameworks' routers), so "/API/admin" could reach the service's
 * "/api/admin" through a catch-all route that lacks the policies of "/api/*". The guard compares
 * the route a path matches with the route it would match if case were ignored; when they differ,
 * the listener refuses the request (400) rather than guess which one the service will take.
 */
export type CaseGuard = (facts: RequestFacts, matched: string | undefined) => string | undefined

/** Undefined when no route path has a letter in it, so case can never matter. */
export function caseGuard(routes: readonly RouteMatch[]): CaseGuard | undefined {
  if (!routes.some((route) => /[a-z]/i.test(route.path.replace(/:[a-z_][a-z0-9_]*/gi, '')))) return undefined
  const folded = routes.map((route) => compileRoute({ ...route, path: route.path.toLowerCase() }, route.name))
  const upperCaseRoutes = routes.some((route) => route.path !== route.path.toLowerCase())
  /** The route the path names when case is ignored, if that is not the one it matched. */
  return function caseGuard(facts, matched) {
    const lower = facts.path.toLowerCase()
    if (!upperCaseRoutes && lower === facts.path) return undefined
    const foldedMatch = firstMatch(folded, { ...facts, path: lower })
    return foldedMatch === matched ? undefined : (foldedMatch ?? '(none)')
  }
}
