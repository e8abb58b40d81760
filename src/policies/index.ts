import * as v from 'valibot'
import type { ConfigProblem } from '../core/config-error.ts'
import { apiKeyPolicy } from './api-key/index.ts'
import { authzPolicy } from './authz/index.ts'
import { bulkheadPolicy } from './bulkhead/index.ts'
import { circuitBreakerPolicy } from './circuit-breaker/index.ts'
import { extAuthzPolicy } from './ext-authz/index.ts'
import { corsPolicy } from './cors/index.ts'
import { fallbackPolicy } from './fallback/index.ts'
import { faultPolicy } from './fault/index.ts'
import { ipPolicy } from './ip/index.ts'
import { jwtPolicy } from './jwt/index.ts'
import { limitsPolicy } from './limits/index.ts'
import { mirrorPolicy } from './mirror/index.ts'
import type { FileFacts, PolicyModule } from './policy.ts'
import { rateLimitPolicy } from './rate-limit/index.ts'
import { requestHeadersPolicy } from './request-headers/index.ts'
import { responseHeadersPolicy, secureHeadersPolicy, stripResponseHeadersPolicy } from './response-headers/index.ts'
import { retryPolicy } from './retry/index.ts'
import { splitPolicy } from './split/index.ts'
import { timeoutPolicy } from './timeout/index.ts'
import { websocketPolicy } from './websocket/index.ts'

/**
 * The registry: every policy, keyed by its RoutePolicies field, in the order its TOML keys are listed
 * (in error messages and docs). Adding a policy: its folder, one line here, and its field in `chain`.
 */
export const policyRegistry = {
  timeoutMs: timeoutPolicy,
  retry: retryPolicy,
  circuitBreaker: circuitBreakerPolicy,
  fallback: fallbackPolicy,
  bulkhead: bulkheadPolicy,
  mirror: mirrorPolicy,
  fault: faultPolicy,
  rateLimits: rateLimitPolicy,
  cors: corsPolicy,
  secureHeaders: secureHeadersPolicy,
  stripResponseHeaders: stripResponseHeadersPolicy,
  requestHeaders: requestHeadersPolicy,
  responseHeaders: responseHeadersPolicy,
  ip: ipPolicy,
  limits: limitsPolicy,
  jwt: jwtPolicy,
  apiKey: apiKeyPolicy,
  authz: authzPolicy,
  extAuthz: extAuthzPolicy,
  split: splitPolicy,
  websocket: websocketPolicy,
}

type Registry = typeof policyRegistry
export type PolicyField = keyof Registry
type ValueOf<Module> = Module extends { layer(value: infer Value, context: never): unknown } ? Value : never

/**
 * The normalized policies of a route: its own, else [defaults]'s, else the built-in default (a
 * route's table replaces the default's whole). Only the timeout is on unless a file sets it.
 */
export type RoutePolicies = { timeoutMs: number } & { [Field in PolicyField]?: ValueOf<Registry[Field]> }

/**
 * A route's chain, outermost first. The order is the contract; read it here, top to bottom:
 *
 *   cors                    answers preflights; adds CORS headers to every answer
 *   strip_response_headers  removes headers that reveal the stack, also ones secure_headers would add
 *   secure_headers          adds HSTS, nosniff and the rest where the upstream did not, error answers included
 *   response_headers        set/add/remove on every answer, error answers included; inside cors, strip and
 *                           secure_headers so they keep the last word on Vary, stack-revealing and security headers
 *   ip                      allow/deny by client address
 *   limits                  methods, body size (while streaming), header and URL sizes
 *   jwt, api_key            who is calling; forwards claims / consumer upstream
 *   authz                   what the caller may do: rules on the verified claims and consumer, method and path
 *   ext_authz               asks an authorization service; after authz, so a cheap local refusal spares the call
 *   rate_limit              local and global (Redis) quotas, keyed by client, header, claim or route
 *   websocket               admits a WebSocket handshake (enabled, max_connections) once, whatever retries
 *                           follow; the forwarder then opens the upstream side instead of sending a request
 *   split                   picks the upstream version (weights, sticky hashing)
 *   request_headers         set/add/remove on what goes upstream: after auth and split, so ${jwt.*},
 *                           ${consumer} and ${upstream} are known; before mirror, so the shadow copy gets them too
 *   mirror                  a shadow copy to another upstream, never waited on
 *   fallback                answers when everything below failed or the breaker is open
 *   timeout                 the whole request's deadline, queueing and retries included
 *   bulkhead                caps concurrent requests on the route, with a bounded queue
 *   retry                   tries again, elsewhere, within budget and deadline; per-try timeouts
 *   circuit breaker         counts each try; open means fail fast without calling the upstream
 *   fault                   injected delays and aborts, seen by retries and breakers like real ones
 *   (forward)               one try to one endpoint: src/proxy/forward.ts
 *
 * Policies of "upstream" scope (breaker, fault) come last: they are built once for each upstream the
 * route may send to, below the layers that choose it.
 */
export const chain: readonly PolicyField[] = [
  'cors',
  'stripResponseHeaders',
  'secureHeaders',
  'responseHeaders',
  'ip',
  'limits',
  'jwt',
  'apiKey',
  'authz',
  'extAuthz',
  'rateLimits',
  'websocket',
  'split',
  'requestHeaders',
  'mirror',
  'fallback',
  'timeoutMs',
  'bulkhead',
  'retry',
  'circuitBreaker',
  'fault',
]

/** A module as the generic code sees it: its value's type is known only to its own folder. */
export type AnyPolicyModule = PolicyModule<unknown, string, unknown>

const modules = Object.values(policyRegistry) as AnyPolicyModule[]

/** The modules in chain order, outermost first. */
export const chainModules: readonly AnyPolicyModule[] = chain.map((field) => policyRegistry[field] as AnyPolicyModule)

/** Optional schema entries keyed by TOML key, to spread into [defaults] ("defaults") or a [[routes]] table ("route"). */
export function policyEntries(table: 'defaults' | 'route'): Record<string, v.GenericSchema> {
  const entries: Record<string, v.GenericSchema> = {}
  for (const module of modules) if (!module.routeOnly) entries[module.key] = v.optional(module.schema)
  if (table === 'defaults') return entries
  for (const module of modules) {
    if (!module.routeOnly) continue
    entries[module.key] = v.optional(module.schema)
    for (const [key, schema] of Object.entries(module.extraKeys ?? {})) entries[key] = v.optional(schema)
  }
  return entries
}

/** The normalized policies a validated route or [defaults] table sets itself. */
export function pickPolicies(table: Readonly<Record<string, unknown>>): Partial<RoutePolicies> {
  const picked: Partial<Record<PolicyField, unknown>> = {}
  for (const module of modules) {
    const value = module.pick ? module.pick(table) : table[module.key]
    if (value !== undefined) picked[module.field as PolicyField] = value
  }
  // Each value came out of its own module's schema, so it has that field's type.
  return picked as Partial<RoutePolicies>
}

export function builtInPolicies(): RoutePolicies {
  const defaults: Partial<Record<PolicyField, unknown>> = {}
  for (const module of modules) {
    if (module.builtInDefault !== undefined) defaults[module.field as PolicyField] = module.builtInDefault
  }
  return defaults as RoutePolicies
}

/** File paths in the policies made relative to the policy file (api_key's keys_file). */
export function resolvePolicyFiles(policies: Partial<RoutePolicies>, resolve: (path: string) => string): Partial<RoutePolicies> {
  let resolved = policies
  for (const module of modules) {
    const field = module.field as PolicyField
    const value = policies[field]
    if (value === undefined || module.resolveFiles === undefined) continue
    resolved = { ...resolved, [field]: module.resolveFiles(value, resolve) }
  }
  return resolved
}

/** Every policy's cross-reference problems in one [[routes]] or [defaults] table of the raw document. */
export function policyReferenceProblems(table: unknown, at: string, file: FileFacts): ConfigProblem[] {
  if (typeof table !== 'object' || table === null || Array.isArray(table)) return []
  const raw = table as Record<string, unknown>
  return modules.flatMap((module) =>
    module.references === undefined || raw[module.key] === undefined ? [] : module.references(raw[module.key], `${at}.${module.key}`, file, raw),
  )
}
