import { importJWK, type JWK } from 'jose'
import type { JwtPolicy } from './types.ts'

/** Which algorithms each key type can verify: RSA for RS and PS, EC for ES, OKP for EdDSA. */
const FAMILY: Record<string, RegExp> = { RSA: /^(RS|PS)/, EC: /^ES/, OKP: /^(EdDSA|Ed25519)$/ }

/**
 * The inline `keys` that would fail only when the first token arrives: a key jose cannot import
 * (a bad modulus, a curve point off the curve) or one no allowed algorithm can use. One message each,
 * by position; an empty list when every key is usable.
 */
export async function unusableInlineKeys(policy: JwtPolicy): Promise<string[]> {
  const problems: string[] = []
  for (const [index, key] of (policy.keys ?? []).entries()) {
    const jwk = key as JWK
    const family = FAMILY[String(jwk.kty)]
    const alg = jwk.alg ?? policy.algorithms.find((algorithm) => family?.test(algorithm))
    if (alg === undefined) {
      problems.push(`keys[${index}]: no allowed algorithm (${policy.algorithms.join(', ')}) takes a key of type ${JSON.stringify(jwk.kty)}`)
      continue
    }
    try {
      await importJWK(jwk, alg)
    } catch (error) {
      problems.push(`keys[${index}]: cannot be used as a ${alg} key: ${(error as Error).message}`)
    }
  }
  return problems
}
