export interface JwtPolicy {
  /** Exactly one key source: a JWKS URL, inline public JWKs, or an environment variable holding an HMAC secret. */
  jwks?: string
  keys?: Array<Record<string, unknown>>
  secretEnv?: string
  issuer?: string[]
  audience?: string[]
  /** Accepted "alg" values; never "none", never HMAC with public keys or the reverse. */
  algorithms: string[]
  requiredClaims: string[]
  /** Refuse tokens without "exp". */
  requireExpiration: boolean
  clockSkewMs: number
  /** Upstream header (lower-case) ← claim name. */
  forwardClaims: Array<[header: string, claim: string]>
  /** Keep the Authorization header on the way upstream; off by default (Envoy's forward: false). */
  forwardToken: boolean
}
