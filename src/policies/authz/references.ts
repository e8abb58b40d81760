import type { ConfigProblem } from '../../core/config-error.ts'
import type { FileFacts } from '../policy.ts'
import { isTable } from '../shared/references.ts'

/**
 * A route whose authz asks for claims but has no jwt (nor one from [defaults]) could never let a
 * request through, nor one asking for consumers without api_key: a load error, not a wall of 403s.
 * [defaults] itself is not checked: each route that inherits it may bring its own jwt.
 */
export function authzReferenceProblems(value: unknown, at: string, file: FileFacts, table: Readonly<Record<string, unknown>>): ConfigProblem[] {
  if (!isTable(value) || at.startsWith('defaults')) return []
  const defaults = isTable(file.document.defaults) ? file.document.defaults : {}
  const rules = Array.isArray(value.rules) ? value.rules.filter(isTable) : []
  const asks = (key: 'claims' | 'consumers') => value[key] !== undefined || rules.some((rule) => rule[key] !== undefined)
  const has = (key: 'jwt' | 'api_key') => table[key] !== undefined || defaults[key] !== undefined
  const problems: ConfigProblem[] = []
  if (asks('claims') && !has('jwt')) {
    problems.push({ path: at, message: 'asks for claims, but the route has no jwt (nor [defaults]): no request would carry a verified claim' })
  }
  if (asks('consumers') && !has('api_key')) {
    problems.push({ path: at, message: 'asks for consumers, but the route has no api_key (nor [defaults]): no request would have a consumer' })
  }
  return problems
}
