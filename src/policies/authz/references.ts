import type { ConfigProblem } from '../../core/config-error.ts'
import type { FileFacts } from '../policy.ts'
import { isTable } from '../shared/references.ts'

/**
 * A route whose authz asks for claims but has no jwt (nor one from [defaults]) could never let a
 * request through, nor one asking for consumers without api_key: a load error, not a wall of 403s.
 * An authz in [defaults] is checked for each route that inherits it.
 */
export function authzReferenceProblems(value: unknown, at: string, file: FileFacts, table: Readonly<Record<string, unknown>>): ConfigProblem[] {
  if (!isTable(value)) return []
  const defaults = isTable(file.document.defaults) ? file.document.defaults : {}
  if (!at.startsWith('defaults')) return missingIdentity(value, table, defaults).map((message) => ({ path: at, message }))
  const routes = Array.isArray(file.document.routes) ? file.document.routes : []
  return routes.flatMap((route, index) =>
    isTable(route) && route.authz === undefined
      ? missingIdentity(value, route, defaults).map((message) => ({ path: `routes[${index}]`, message: `inherits authz from [defaults], which ${message}` }))
      : [],
  )
}

/** What the authz asks for that the route (with [defaults]) cannot give it. */
function missingIdentity(authz: Readonly<Record<string, unknown>>, route: Readonly<Record<string, unknown>>, defaults: Readonly<Record<string, unknown>>): string[] {
  const rules = Array.isArray(authz.rules) ? authz.rules.filter(isTable) : []
  const asks = (key: 'claims' | 'consumers') => authz[key] !== undefined || rules.some((rule) => rule[key] !== undefined)
  const has = (key: 'jwt' | 'api_key') => route[key] !== undefined || defaults[key] !== undefined
  const missing: string[] = []
  if (asks('claims') && !has('jwt')) missing.push('asks for claims, but the route has no jwt (nor [defaults]): no request would carry a verified claim')
  if (asks('consumers') && !has('api_key')) missing.push('asks for consumers, but the route has no api_key (nor [defaults]): no request would have a consumer')
  return missing
}
