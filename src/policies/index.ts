import * as v from 'valibot'
import type { RoutePolicies } from '../config/types.ts'
import { bulkheadPolicy } from './bulkhead/index.ts'
import { circuitBreakerPolicy } from './circuit-breaker/index.ts'
import { fallbackPolicy } from './fallback/index.ts'
import { faultPolicy } from './fault/index.ts'
import { mirrorPolicy } from './mirror/index.ts'
import { rateLimitPolicy } from './rate-limit/index.ts'
import { retryPolicy } from './retry/index.ts'
import { timeoutPolicy } from './timeout/index.ts'
import { apiKeyPolicy } from './api-key/index.ts'
import { corsPolicy } from './cors/index.ts'
import { ipPolicy } from './ip/index.ts'
import { jwtPolicy } from './jwt/index.ts'
import { limitsPolicy } from './limits/index.ts'
import { secureHeadersPolicy, stripResponseHeadersPolicy } from './response-headers/index.ts'

export type PolicyField = keyof RoutePolicies

/** A route policy: one key in [[routes]] and [defaults], normalized into one RoutePolicies field. */
export interface PolicyModule<Field extends PolicyField> {
  /** TOML key, e.g. "timeout". */
  key: string
  field: Field
  /** Validates the TOML value and turns it into the normalized value. */
  schema: v.GenericSchema<unknown, NonNullable<RoutePolicies[Field]>>
  /** Used when neither the route nor [defaults] sets the key; undefined means "policy off". */
  builtInDefault: RoutePolicies[Field]
}

/**
 * Every policy, keyed by its RoutePolicies field; the mapped type makes the compiler insist that
 * each field has a module. Adding a policy: a field in RoutePolicies, a module, one line here.
 */
export const policyRegistry: { readonly [Field in PolicyField]-?: PolicyModule<Field> } = {
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
  ip: ipPolicy,
  limits: limitsPolicy,
  jwt: jwtPolicy,
  apiKey: apiKeyPolicy,
}

const policyFields = Object.keys(policyRegistry) as PolicyField[]

export const policyModules: ReadonlyArray<PolicyModule<PolicyField>> = policyFields.map(
  (field) => policyRegistry[field],
)

/** Optional schema entries keyed by TOML key, to spread into the route and [defaults] tables. */
export function policyEntries(): Record<string, v.GenericSchema> {
  return Object.fromEntries(policyModules.map((module) => [module.key, v.optional(module.schema)]))
}

/** The normalized policies a validated route or [defaults] table sets itself. */
export function pickPolicies(table: Readonly<Record<string, unknown>>): Partial<RoutePolicies> {
  const picked: Partial<Record<PolicyField, unknown>> = {}
  for (const module of policyModules) {
    const value = table[module.key]
    if (value !== undefined) picked[module.field] = value
  }
  // Each value came out of its own module's schema, so it has that field's type.
  return picked as Partial<RoutePolicies>
}

export function builtInPolicies(): RoutePolicies {
  const defaults: Partial<Record<PolicyField, unknown>> = {}
  for (const module of policyModules) {
    if (module.builtInDefault !== undefined) defaults[module.field] = module.builtInDefault
  }
  // Required fields all have a built-in default; the PolicyModule type demands it.
  return defaults as RoutePolicies
}
