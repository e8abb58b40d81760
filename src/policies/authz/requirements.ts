import type { Exchange } from '../../proxy/exchange.ts'
import { claimAt } from '../shared/header-template.ts'
import type { ClaimMatch, Requirement } from './schema.ts'

/** A requirement compiled at load: true when the exchange's verified claims and consumer meet it. */
export type RequirementCheck = (exchange: Exchange) => boolean

/**
 * OAuth 2.0 puts granted scopes in one space-separated string (RFC 6749 §3.3, RFC 8693 `scope`), Azure
 * AD in `scp`: for these names a string is a set of values, so "orders:read orders:write" holds
 * "orders:write". Any other string claim is one value.
 */
const SPACE_SEPARATED = new Set(['scope', 'scp'])

/**
 * @example compileRequirement({ claims: { scope: { allOf: ['orders:write'] } }, consumers: ['billing'] })(exchange)
 */
export function compileRequirement(requirement: Requirement): RequirementCheck {
  const checks: RequirementCheck[] = []
  if (requirement.consumers !== undefined) {
    const consumers = new Set(requirement.consumers)
    checks.push((exchange) => exchange.consumer !== undefined && consumers.has(exchange.consumer))
  }
  for (const [claim, match] of Object.entries(requirement.claims ?? {})) checks.push(claimCheck(claim, match))
  if (checks.length === 1) return checks[0]!
  return (exchange) => {
    for (const check of checks) if (!check(exchange)) return false
    return true
  }
}

function claimCheck(claim: string, match: ClaimMatch): RequirementCheck {
  const path = claim.split('.')
  const spaceSeparated = SPACE_SEPARATED.has(path.at(-1)!)
  const { anyOf, allOf } = match
  return (exchange) => {
    const values = claimValues(claimAt(exchange.claims, claim, path), spaceSeparated)
    if (values.length === 0) return false
    if (allOf !== undefined) for (const value of allOf) if (!values.includes(value)) return false
    if (anyOf !== undefined) {
      for (const value of anyOf) if (values.includes(value)) return true
      return false
    }
    return true
  }
}

const NONE: readonly string[] = []

/** A claim as the set of text values it holds: a list's scalars, one scalar, or a scope string's words. */
export function claimValues(value: unknown, spaceSeparated: boolean): readonly string[] {
  switch (typeof value) {
    case 'string':
      return spaceSeparated ? value.split(' ').filter((word) => word !== '') : [value]
    case 'number':
    case 'boolean':
      return [String(value)]
    case 'object':
      if (!Array.isArray(value)) return NONE
      return value.flatMap((item) => (typeof item === 'string' || typeof item === 'number' || typeof item === 'boolean' ? [String(item)] : []))
    default:
      return NONE
  }
}
