import * as v from 'valibot'
import { describeValue, expectedGot } from '../../core/config-error.ts'
import { convertedString } from '../../core/units.ts'
import { arrayOf, boolean, httpMethods, name, oneOf, table } from '../../core/schema-kit.ts'
import { PATH_EXAMPLE, toRoutePath } from '../../listener/router.ts'

/** Names the policy gives refusals itself: the route-wide requirements, and a request no rule matched. */
export const ROUTE_RULE = 'route'
export const UNMATCHED_RULE = 'unmatched'

const VALUE_EXAMPLE = 'a claim value like "orders:write", a list of them, or { any_of = [...], all_of = [...] }'

/** One value a claim must hold: strings, numbers and booleans are compared as text ("true", "42"). */
function claimValue() {
  return v.pipe(
    v.union([v.string(), v.number(), v.boolean()], (issue) => expectedGot('a string, number or boolean', issue.input)),
    v.transform((value) => String(value)),
  )
}

function valueList() {
  return v.pipe(arrayOf(claimValue()), v.minLength(1, 'expected at least one value'))
}

/** `"admin"` and `["admin", "clerk"]` are any-of; a table says which it is, or both. */
function claimRequirement() {
  const spelled = table({ any_of: v.optional(valueList()), all_of: v.optional(valueList()) })
  // The list comes before the table: valibot's object schemas take an array for a table with no keys.
  return v.pipe(
    v.union([claimValue(), arrayOf(claimValue()), spelled], (issue) => expectedGot(VALUE_EXAMPLE, issue.input)),
    v.check((value) => !Array.isArray(value) || value.length > 0, 'expected at least one value'),
    v.check((value) => typeof value !== 'object' || Array.isArray(value) || value.any_of !== undefined || value.all_of !== undefined, 'expected any_of, all_of or both'),
    v.transform((value): ClaimMatch => {
      if (typeof value === 'string') return { anyOf: [value] }
      if (Array.isArray(value)) return { anyOf: value }
      const match: ClaimMatch = {}
      if (value.any_of !== undefined) match.anyOf = value.any_of
      if (value.all_of !== undefined) match.allOf = value.all_of
      return match
    }),
  )
}

function claims() {
  return v.pipe(
    v.record(
      v.pipe(
        v.string(),
        v.check((claim) => claim !== '' && !claim.split('.').includes(''), (issue) => expectedGot('a claim name or dotted path like "realm_access.roles"', issue.input)),
      ),
      claimRequirement(),
      (issue) => expectedGot('a table like { scope = ["orders:write"] }', issue.input),
    ),
    v.check((map) => Object.keys(map).length > 0, 'expected at least one claim'),
  )
}

function consumers() {
  return v.pipe(arrayOf(name()), v.minLength(1, 'expected at least one consumer name'))
}

function paths() {
  return v.pipe(arrayOf(convertedString(PATH_EXAMPLE, toRoutePath)), v.minLength(1, 'expected at least one path (leave the key out to match any)'))
}

const ruleSchema = v.pipe(
  table({
    name: v.optional(
      v.pipe(
        name(),
        v.check((rule) => rule !== ROUTE_RULE && rule !== UNMATCHED_RULE, (issue) => `${describeValue(issue.input)} is a name the policy uses itself; pick another`),
      ),
    ),
    methods: v.optional(httpMethods()),
    paths: v.optional(paths()),
    claims: v.optional(claims()),
    consumers: v.optional(consumers()),
    deny: v.optional(boolean(), false),
  }),
  v.check(
    ({ deny, claims, consumers }) => !deny || (claims === undefined && consumers === undefined),
    'a deny rule refuses whatever it matches: give it methods and paths, not claims or consumers',
  ),
)

export const authzSchema = v.pipe(
  table({
    mode: v.optional(oneOf(['enforce', 'dry_run']), 'enforce'),
    claims: v.optional(claims()),
    consumers: v.optional(consumers()),
    rules: v.optional(v.pipe(arrayOf(ruleSchema), v.minLength(1, 'expected at least one rule (leave the key out for none)'))),
    unmatched: v.optional(oneOf(['deny', 'allow']), 'deny'),
  }),
  v.check(({ claims, consumers, rules }) => claims !== undefined || consumers !== undefined || rules !== undefined, 'expected claims, consumers or rules'),
  v.forward(
    v.check(({ rules }) => {
      const names = (rules ?? []).flatMap((rule) => (rule.name === undefined ? [] : [rule.name]))
      return new Set(names).size === names.length
    }, 'expected each rule to have its own name'),
    ['rules'],
  ),
  v.transform((t): AuthzPolicy => {
    const policy: AuthzPolicy = {
      dryRun: t.mode === 'dry_run',
      rules: (t.rules ?? []).map((rule, index): AuthzRule => {
        const compiled: AuthzRule = { name: rule.name ?? `rules[${index}]`, deny: rule.deny }
        if (rule.methods !== undefined) compiled.methods = rule.methods
        if (rule.paths !== undefined) compiled.paths = rule.paths
        const requirement = requirementOf(rule)
        if (requirement !== undefined) compiled.require = requirement
        return compiled
      }),
      unmatched: t.unmatched,
    }
    const everyRequest = requirementOf(t)
    if (everyRequest !== undefined) policy.require = everyRequest
    return policy
  }),
)

function requirementOf(table: { claims?: Record<string, ClaimMatch> | undefined; consumers?: string[] | undefined }): Requirement | undefined {
  if (table.claims === undefined && table.consumers === undefined) return undefined
  const requirement: Requirement = {}
  if (table.claims !== undefined) requirement.claims = table.claims
  if (table.consumers !== undefined) requirement.consumers = table.consumers
  return requirement
}

/** Values of one claim: any_of needs one of them, all_of every one; with both, both hold. */
export interface ClaimMatch {
  anyOf?: string[]
  allOf?: string[]
}

/** What a request must carry; every key given must hold. */
export interface Requirement {
  /** Claim name or dotted path → the values it must hold. */
  claims?: Record<string, ClaimMatch>
  /** API-key consumers, any one of them. */
  consumers?: string[]
}

/** One [[routes.authz.rules]]: the requests it is about, and what they must carry. */
export interface AuthzRule {
  name: string
  /** Upper-case; any method when absent. */
  methods?: string[]
  /** Route path patterns ("/orders/*", "/users/:id"); any path when absent. */
  paths?: string[]
  /** Absent on a rule that lets every matching request through (a public path). */
  require?: Requirement
  /** Refuse every request the rule matches. */
  deny: boolean
}

/** [routes.authz]: route-wide requirements, then the first rule that matches the request decides. */
export interface AuthzPolicy {
  /** mode = "dry_run": refusals are logged and counted, and the request goes on. */
  dryRun: boolean
  /** What every request of the route must carry, before any rule. */
  require?: Requirement
  rules: AuthzRule[]
  /** What happens to a request no rule matches, when there are rules. */
  unmatched: 'deny' | 'allow'
}
