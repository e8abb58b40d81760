import type { Weakening } from '../policy.ts'
import { deadlineAtMost, equal, including, keptOn, within } from '../shared/strictness.ts'
import type { JwtPolicy } from './types.ts'

/**
 * A jwt policy is at least as strict as a locked one when it trusts the same keys (the same JWKS or
 * secret, or some of the same inline keys), accepts no other issuer, audience or algorithm, requires
 * every claim the lock requires, keeps exp required, allows no more clock skew, and still sets every
 * claim header the lock sets (dropping one would let a client's own header of that name through).
 */
export function jwtWeakerThan(own: JwtPolicy, locked: JwtPolicy): Weakening[] {
  return [
    ...equal('jwks', own.jwks, locked.jwks),
    ...equal('secret_env', own.secretEnv, locked.secretEnv),
    ...(locked.keys === undefined ? equal('keys', own.keys, undefined) : within('keys', own.keys, locked.keys)),
    ...within('issuer', own.issuer, locked.issuer),
    ...within('audience', own.audience, locked.audience),
    ...within('algorithms', own.algorithms, locked.algorithms),
    ...including('required_claims', own.requiredClaims, locked.requiredClaims),
    ...keptOn('require_expiration', own.requireExpiration, locked.requireExpiration),
    ...deadlineAtMost('clock_skew', own.clockSkewMs, locked.clockSkewMs),
    ...including('forward_claims', own.forwardClaims, locked.forwardClaims),
  ]
}
