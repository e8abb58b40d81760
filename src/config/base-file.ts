import * as v from 'valibot'
import { ConfigError, type ConfigProblem } from '../core/config-error.ts'
import { name, table } from '../core/schema-kit.ts'
import { pickPolicies, policyEntries, resolvePolicyFiles } from '../policies/index.ts'
import { cidrList } from '../policies/ip/index.ts'
import { formatPath, issueToProblem, parseDocument } from './load.ts'
import { issueMessage } from './schema.ts'
import type { LockedBase } from './locks.ts'
import { resolveSecrets, type SecretSources } from './secrets.ts'
import { withTomlHint } from './toml-hints.ts'

/**
 * A base policy file is written like a policy file, with only what it locks: [gateway]
 * trusted_proxies, [defaults] (every route), and [[routes]] tables with a name (that route only).
 */
export const baseFileSchema = table({
  gateway: v.optional(table({ trusted_proxies: v.optional(cidrList()) }), () => ({})),
  defaults: v.optional(table(policyEntries('defaults')), () => ({})),
  routes: v.optional(
    v.array(table({ name: name(), ...policyEntries('defaults') }), (issue) => issueMessage(issue)),
    () => [],
  ),
})

function duplicateNames(routes: ReadonlyArray<{ name: string }>): ConfigProblem[] {
  const first = new Map<string, number>()
  return routes.flatMap((route, index) => {
    const seen = first.get(route.name)
    if (seen === undefined) first.set(route.name, index)
    return seen === undefined ? [] : [{ path: `routes[${index}].name`, message: `duplicate route name ${JSON.stringify(route.name)} (also routes[${seen}])` }]
  })
}

/**
 * Parses and validates a base. `resolveFile` places its relative file paths (an api_key keys_file):
 * beside a base file, as written for a base from a URL.
 */
export function loadBaseText(text: string, source: string, secrets: SecretSources, resolveFile: (path: string) => string): LockedBase {
  const document = parseDocument(text, source)
  const resolved = resolveSecrets(document, source, secrets, formatPath)
  const result = v.safeParse(baseFileSchema, document, { abortEarly: false, message: issueMessage })
  const problems = [...resolved.problems, ...(result.issues ?? []).map(issueToProblem), ...(result.success ? duplicateNames(result.output.routes) : [])]
  if (!result.success || problems.length > 0) throw new ConfigError(source, problems.map((problem) => withTomlHint(problem, text)))
  const tables = document as { defaults?: Record<string, unknown>; routes?: Array<Record<string, unknown>> }
  const written: LockedBase['written'] = { defaults: tables.defaults ?? {} }
  for (const [index, route] of (tables.routes ?? []).entries()) written[`routes[${index}]`] = route
  const base: LockedBase = {
    source,
    written,
    defaults: resolvePolicyFiles(pickPolicies(result.output.defaults), resolveFile),
    routes: result.output.routes.map((route, index) => ({ name: route.name, index, policies: resolvePolicyFiles(pickPolicies(route), resolveFile) })),
  }
  const trusted = result.output.gateway.trusted_proxies
  if (trusted !== undefined) base.trustedProxies = trusted
  return base
}
