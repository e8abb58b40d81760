import { GatewayError } from '../../core/errors.ts'
import type { GatewayEventMap } from '../../core/events.ts'
import { compilePath, type PathMatcher } from '../../listener/router.ts'
import type { Exchange, Layer, Step } from '../../proxy/exchange.ts'
import type { PolicyModule, RouteContext } from '../policy.ts'
import { authzReferenceProblems } from './references.ts'
import { compileRequirement, type RequirementCheck } from './requirements.ts'
import { authzSchema, ROUTE_RULE, UNMATCHED_RULE, type AuthzPolicy, type AuthzRule, type Requirement } from './schema.ts'

export type { AuthzPolicy, AuthzRule } from './schema.ts'

/** [routes.authz]: what a verified caller may do, by claims, consumer, method and path. */
export const authzPolicy: PolicyModule<AuthzPolicy, 'authz'> = {
  key: 'authz',
  field: 'authz',
  schema: authzSchema,
  builtInDefault: undefined,
  references: authzReferenceProblems,
  layer: (policy, context) => authzLayer(policy, context),
}

/** One refusal, made once at load: its event, its access-log mark and its answer's challenge. */
interface Refusal {
  event: GatewayEventMap['authz_refused']
  mark: string
  /** RFC 6750 §3.1, for a request that carried a bearer token. */
  challenge: Record<string, string>
}

interface CompiledRule {
  matches(method: string, path: string): boolean
  /** undefined: every request the rule matches passes. */
  allows: RequirementCheck | undefined
  deny: boolean
  refusal: Refusal
}

const BEARER = /^bearer /i

/**
 * Checks the route-wide requirements, then finds the first rule whose methods and paths match the
 * request: a deny rule refuses it, any other lets it through when the request carries everything the
 * rule asks for. A request no rule matches is refused (unmatched = "allow" lets it through). Refused
 * requests get 403 `forbidden`, with `WWW-Authenticate: Bearer error="insufficient_scope"` when they
 * came with a bearer token; in dry run they are counted and go on. It reads what jwt and api_key
 * verified (exchange.claims, exchange.consumer), so it sits after them in the chain.
 *
 * @example authzLayer({ dryRun: false, rules: [{ name: 'write', methods: ['POST'], require: { claims: { scope: { anyOf: ['orders:write'] } } }, deny: false }], unmatched: 'allow' }, context)
 */
export function authzLayer(policy: AuthzPolicy, context: RouteContext): Layer {
  const route = context.route.name
  const events = context.events
  const { dryRun } = policy
  const refusalOf = (rule: string, requirement: Requirement | undefined): Refusal => ({
    event: Object.freeze({ route, rule, dryRun }),
    mark: dryRun ? `dry_run:${rule}` : rule,
    challenge: { 'www-authenticate': challengeFor(requirement) },
  })
  const everyRequest = policy.require === undefined ? undefined : { allows: compileRequirement(policy.require), refusal: refusalOf(ROUTE_RULE, policy.require) }
  const rules = policy.rules.map((rule): CompiledRule => compileRule(rule, refusalOf(rule.name, rule.require)))
  const unmatched = policy.rules.length === 0 || policy.unmatched === 'allow' ? undefined : refusalOf(UNMATCHED_RULE, undefined)

  /** Counts and marks the refusal; the error to answer with, unless this is a dry run. */
  const refuse = (exchange: Exchange, refusal: Refusal): GatewayError | undefined => {
    events.emit('authz_refused', refusal.event)
    exchange.authz = refusal.mark
    if (dryRun) return undefined
    const error = new GatewayError('forbidden', 'the request is not allowed')
    if (BEARER.test(exchange.request.headers.get('authorization') ?? '')) error.headers = refusal.challenge
    return error
  }

  /** The refusal that applies to the request, if any. */
  const decide = (exchange: Exchange): Refusal | undefined => {
    if (everyRequest !== undefined && !everyRequest.allows(exchange)) return everyRequest.refusal
    if (rules.length === 0) return undefined
    const method = exchange.request.method
    const path = exchange.path
    for (const rule of rules) {
      if (!rule.matches(method, path)) continue
      if (rule.deny || (rule.allows !== undefined && !rule.allows(exchange))) return rule.refusal
      return undefined
    }
    return unmatched
  }

  return (next: Step) =>
    function authz(exchange: Exchange): Promise<Response> {
      const refusal = decide(exchange)
      const error = refusal === undefined ? undefined : refuse(exchange, refusal)
      return error === undefined ? next(exchange) : Promise.reject(error)
    }
}

function compileRule(rule: AuthzRule, refusal: Refusal): CompiledRule {
  const methods = rule.methods === undefined ? undefined : new Set(rule.methods)
  const paths: PathMatcher[] | undefined = rule.paths?.map(compilePath)
  return {
    matches(method, path) {
      if (methods !== undefined && !methods.has(method)) return false
      if (paths === undefined) return true
      for (const matches of paths) if (matches(path)) return true
      return false
    },
    allows: rule.require === undefined ? undefined : compileRequirement(rule.require),
    deny: rule.deny,
    refusal,
  }
}

/** `Bearer error="insufficient_scope"`, with the scope the rule asks for when it asks for one (RFC 6750 §3). */
function challengeFor(requirement: Requirement | undefined): string {
  const scope = requirement?.claims?.scope ?? requirement?.claims?.scp
  const wanted = scope === undefined ? [] : [...(scope.allOf ?? []), ...(scope.anyOf ?? [])]
  // A scope-token is printable ASCII without '"' and '\' (RFC 6749 §3.3); anything else is left out.
  const printable = wanted.filter((value) => /^[\x21\x23-\x5b\x5d-\x7e]+$/.test(value))
  return printable.length === 0 ? 'Bearer error="insufficient_scope"' : `Bearer error="insufficient_scope", scope="${printable.join(' ')}"`
}

declare module '../../core/events.ts' {
  interface GatewayEventMap {
    /** authz refused a request (or would have, in dry run); rule is the rule's name, "route" or "unmatched". */
    authz_refused: { route: string; rule: string; dryRun: boolean }
  }
}
