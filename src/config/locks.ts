import type { ConfigProblem } from '../core/config-error.ts'
import { pickPolicies, policyRegistry, type AnyPolicyModule, type PolicyField, type RoutePolicies } from '../policies/index.ts'
import type { FileFacts, Weakening } from '../policies/policy.ts'
import { equal, sameValue, show } from '../policies/shared/strictness.ts'
import type { ConfigFile } from './schema.ts'
import type { Config } from './types.ts'

/**
 * A locked base policy ([control] base): what it sets is the floor. Its [defaults] lock every route
 * of the service ("routes.*"), its named [[routes]] lock the service's route of that name, and its
 * [gateway] trusted_proxies locks the gateway's. A service's own file may leave a locked key out (the
 * base's value is used) or set it at least as strict (PolicyModule.weakerThan; equal where a policy
 * has no such hook); anything looser is a load error naming both files and both key paths.
 */
export interface LockedBase {
  /** The base's file path or URL, as errors and /config/status name it. */
  source: string
  trustedProxies?: string[]
  defaults: Partial<RoutePolicies>
  routes: Array<{ name: string; index: number; policies: Partial<RoutePolicies> }>
  /** The tables as written, by key path in the base ("defaults", "routes[0]"), for the policies' reference checks. */
  written: Record<string, Readonly<Record<string, unknown>>>
}

/** One locked key, as /config/status lists it: `routes.*.jwt` locked by the base's `defaults.jwt`. */
export interface Lock {
  key: string
  /** Where the base sets it. */
  at: string
}

const moduleOf = (field: PolicyField) => policyRegistry[field] as AnyPolicyModule

function fieldsOf(policies: Partial<RoutePolicies>): PolicyField[] {
  return (Object.keys(policies) as PolicyField[]).filter((field) => policies[field] !== undefined)
}

export function baseLocks(base: LockedBase): Lock[] {
  const locks: Lock[] = []
  if (base.trustedProxies !== undefined) locks.push({ key: 'gateway.trusted_proxies', at: 'gateway.trusted_proxies' })
  for (const field of fieldsOf(base.defaults)) locks.push({ key: `routes.*.${moduleOf(field).key}`, at: `defaults.${moduleOf(field).key}` })
  for (const route of base.routes) {
    for (const field of fieldsOf(route.policies)) locks.push({ key: `routes.${route.name}.${moduleOf(field).key}`, at: `routes[${route.index}].${moduleOf(field).key}` })
  }
  return locks
}

/** "routes[1].limits" + "max_body", "rate_limit" + "[0].rate": a key path one level down. */
function under(path: string, sub: string): string {
  return sub === '' ? path : sub.startsWith('[') ? `${path}${sub}` : `${path}.${sub}`
}

interface LockedValue {
  field: PolicyField
  value: unknown
  /** Its key path in the base. */
  at: string
  /** As written there. */
  written: unknown
}

/** The base's locked policies for one route: its [defaults], replaced key by key by its route of that name. */
function lockedFor(base: LockedBase, routeName: string): LockedValue[] {
  const locked = new Map<PolicyField, LockedValue>()
  const add = (policies: Partial<RoutePolicies>, table: string) => {
    for (const field of fieldsOf(policies)) {
      const key = moduleOf(field).key
      locked.set(field, { field, value: policies[field], at: `${table}.${key}`, written: base.written[table]?.[key] })
    }
  }
  add(base.defaults, 'defaults')
  const named = base.routes.find((route) => route.name === routeName)
  if (named !== undefined) add(named.policies, `routes[${named.index}]`)
  return [...locked.values()]
}

/**
 * Puts the base's locked values where the service file leaves them out, and returns every place the
 * file loosens one. `file` is the validated file, to tell a route's own keys from inherited ones.
 */
export function applyBase(config: Config, file: ConfigFile, base: LockedBase): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  const reported = new Set<string>()
  // A problem from [defaults], the service's or the base's, shows up in every route that has it; once is enough.
  const report = (problem: ConfigProblem, key = `${problem.path}\n${problem.message}`): void => {
    if (!reported.has(key)) problems.push(problem)
    reported.add(key)
  }
  const loosens = (path: string, lockedAt: string, weakening: Weakening): void =>
    report({ path: under(path, weakening.path), message: `loosens the locked base (${base.source}: ${under(lockedAt, weakening.path)}): ${weakening.message}` })
  if (base.trustedProxies !== undefined) {
    const own = config.gateway.trustedProxies
    if (own === undefined) config.gateway.trustedProxies = [...base.trustedProxies]
    else if (!sameValue([...own].sort(), [...base.trustedProxies].sort())) {
      // Which proxies are trusted decides which address ip rules see: trusting fewer is not stricter.
      loosens('gateway.trusted_proxies', 'gateway.trusted_proxies', { path: '', message: `is locked to ${show(base.trustedProxies)} (neither more nor fewer proxies), got ${show(own)}` })
    }
  }
  const routeNames = config.routes.map((route) => route.name)
  for (const route of base.routes) {
    if (routeNames.includes(route.name)) continue
    problems.push({
      path: 'routes',
      message: `the locked base (${base.source}: routes[${route.index}]) locks route ${JSON.stringify(route.name)}, which this file does not have (routes: ${routeNames.join(', ') || 'none'})`,
    })
  }
  const ownDefaults = pickPolicies(file.defaults)
  // What an inherited value refers to (an upstream, [redis]) must be in this file.
  const facts: FileFacts = { document: config.redis === undefined ? {} : { redis: config.redis }, upstreamNames: Object.keys(config.upstreams) }
  for (const route of config.routes) {
    const own = pickPolicies(file.routes[route.index]!)
    const effective = route.policies as Record<PolicyField, unknown>
    for (const { field, value, at, written } of lockedFor(base, route.name)) {
      const module = moduleOf(field)
      const ownAt = own[field] !== undefined ? `routes[${route.index}].${module.key}` : ownDefaults[field] !== undefined ? `defaults.${module.key}` : undefined
      if (ownAt === undefined) {
        effective[field] = value
        for (const problem of module.references?.(written, at, facts, file.routes[route.index] as Record<string, unknown>) ?? []) {
          report({ path: `routes[${route.index}].${module.key}`, message: `inherits the locked base (${base.source}: ${problem.path}), which this file cannot meet: ${problem.message}` }, problem.path)
        }
        continue
      }
      const weakenings = module.weakerThan ? module.weakerThan(effective[field], value) : equal('', effective[field], value)
      for (const weakening of weakenings) loosens(ownAt, at, weakening)
    }
  }
  return problems
}
