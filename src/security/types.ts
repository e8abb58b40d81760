/** The normalized security policies (src/policies/{cors,ip,limits,jwt,api-key,response-headers}.ts). */

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

export interface ApiKeyPolicy {
  header: string // lower-case
  /** Resolved against the policy file's directory. */
  keysFile: string
  /** Upstream header that carries the consumer's name. */
  consumerHeader: string
  /** Keep the key header on the way upstream; off by default. */
  forwardKey: boolean
}

/** CIDRs as written; parsed into bytes when the route's chain is built. */
export interface IpPolicy {
  allow: string[]
  deny: string[]
}

export interface LimitsPolicy {
  maxBodyBytes: number
  maxHeaderBytes: number
  maxUrlLength: number
  /** Methods the route accepts; others get 405 with Allow. Undefined: any. */
  methods?: string[]
  /** Deadline for reading the request body; 0 is off. Also the listener's header deadline where the runtime has one. */
  clientTimeoutMs: number
}

export interface CorsPolicy {
  /** Exact origins, or ["*"]. */
  origins: string[]
  methods: string[]
  /** Empty: reflect Access-Control-Request-Headers (Hono's default). */
  headers: string[]
  exposeHeaders: string[]
  maxAgeSeconds?: number
  credentials: boolean
}

/**
 * Hono secureHeaders options (camelCase, as Hono names them): true keeps Hono's value, a string
 * replaces it, false leaves the header out; contentSecurityPolicy maps camelCase directives to
 * sources. false for the whole policy turns it off (a route overriding [defaults]).
 */
export type SecureHeadersPolicy = Record<string, boolean | string | Record<string, string[]>> | false

/** Listener TLS: PEM files, resolved against the policy file's directory. */
export interface ListenerTls {
  cert: string
  key: string
  /** Verify client certificates against this CA (mTLS); clients without one are refused. */
  clientCa?: string
}
