import { createLocalJWKSet, errors, jwtVerify, type JWTVerifyGetKey, type JWTVerifyOptions } from 'jose'
import { VerifiedTokens } from './verified-tokens.ts'
import * as v from 'valibot'
import { describeValue, expectedGot } from '../../core/config-error.ts'
import { arrayOf, boolean, table, text } from '../../core/schema-kit.ts'
import { duration } from '../../core/units.ts'
import { GatewayError } from '../../core/errors.ts'
import type { Exchange, Layer, Step } from '../../proxy/exchange.ts'
import type { PolicyModule, RouteContext } from '../policy.ts'
import { asHeaderValue } from '../shared/header-template.ts'
import { JwksUnavailableError, RemoteJwks } from './jwks.ts'
import { jwtWeakerThan } from './strictness.ts'
import type { JwtPolicy } from './types.ts'

const HMAC = ['HS256', 'HS384', 'HS512']
const PUBLIC_KEY = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519']
/** RFC 7518 §3.2: an HMAC key at least as long as the hash. */
export const MIN_SECRET_BYTES = 32
/** Envoy jwt_authn's clock_skew_seconds default. */
const DEFAULT_CLOCK_SKEW = '60s'
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/i
/** Headers a claim must never overwrite: the proxy's own, and hop-by-hop ones. */
const RESERVED_HEADERS = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'te', 'upgrade', 'x-forwarded-for', 'x-request-id'])
/** JWK members that only a private or secret key has; keys in the policy file must be public. */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'priv']

function stringOrList() {
  return v.pipe(
    v.union([text(), arrayOf(text())], (issue) => expectedGot('a string or an array of strings', issue.input)),
    v.transform((value) => (typeof value === 'string' ? [value] : value)),
  )
}

function algorithm() {
  const known = [...PUBLIC_KEY, ...HMAC]
  return v.pipe(
    v.string((issue) => expectedGot('an algorithm like "RS256"', issue.input)),
    v.check(
      (alg) => known.includes(alg),
      (issue) =>
        String(issue.input).toLowerCase() === 'none'
          ? '"none" (unsigned tokens) is never accepted'
          : expectedGot(`one of ${known.map((a) => `"${a}"`).join(', ')}`, issue.input),
    ),
  )
}

function jwksUrl() {
  return v.pipe(
    text(),
    v.check((url) => /^https?:\/\/[^/\s]+/i.test(url) && URL.canParse(url), (issue) => expectedGot('an http(s) URL', issue.input)),
  )
}

function publicJwk() {
  return v.pipe(
    v.record(v.string(), v.unknown(), (issue) => expectedGot('a JSON Web Key table like { kty = "RSA", n = "...", e = "AQAB" }', issue.input)),
    v.check((jwk) => typeof jwk.kty === 'string', 'expected a JSON Web Key with a "kty"'),
    v.check((jwk) => jwk.kty !== 'oct', 'is a secret (kty "oct"); put HMAC secrets in an environment variable and name it in secret_env'),
    v.check(
      (jwk) => !PRIVATE_MEMBERS.some((member) => member in jwk),
      'is a private key; give the public key only (without "d", "p", "q", ...)',
    ),
  )
}

function claimHeaders() {
  return v.pipe(
    v.record(
      v.pipe(
        v.string(),
        v.regex(TOKEN, (issue) => expectedGot('a header name like "x-user"', issue.input)),
        v.toLowerCase(),
        v.check((name) => !RESERVED_HEADERS.has(name), (issue) => `${describeValue(issue.input)} is set by the proxy itself; pick another header name`),
      ),
      text(),
      (issue) => expectedGot('a table like { "x-user" = "sub" }', issue.input),
    ),
    v.transform((map) => Object.entries(map).map(([header, claim]): [string, string] => [header.toLowerCase(), claim])),
  )
}

const jwtSchema = v.pipe(
  table({
    jwks: v.optional(jwksUrl()),
    keys: v.optional(v.pipe(arrayOf(publicJwk()), v.minLength(1, 'expected at least one key'))),
    secret_env: v.optional(text()),
    issuer: v.optional(stringOrList()),
    audience: v.optional(stringOrList()),
    algorithms: v.optional(v.pipe(arrayOf(algorithm()), v.minLength(1, 'expected at least one algorithm'))),
    required_claims: v.optional(arrayOf(text()), []),
    require_expiration: v.optional(boolean(), true),
    clock_skew: v.optional(duration(), DEFAULT_CLOCK_SKEW),
    forward_claims: v.optional(claimHeaders(), {}),
    forward_token: v.optional(boolean(), false),
  }),
  v.check(
    ({ jwks, keys, secret_env }) => [jwks, keys, secret_env].filter((source) => source !== undefined).length === 1,
    'expected exactly one of jwks, keys or secret_env',
  ),
  v.forward(
    v.partialCheck(
      [['secret_env'], ['algorithms']],
      ({ secret_env, algorithms }) =>
        algorithms === undefined || algorithms.every((alg) => HMAC.includes(alg) === (secret_env !== undefined)),
      (issue) =>
        issue.input.secret_env !== undefined
          ? 'expected only HS256, HS384 or HS512 with secret_env'
          : 'expected public-key algorithms (RS*, PS*, ES*, EdDSA) with jwks or keys; HS* needs secret_env',
    ),
    ['algorithms'],
  ),
  v.transform((t): JwtPolicy => {
    const policy: JwtPolicy = {
      algorithms: t.algorithms ?? (t.secret_env !== undefined ? ['HS256'] : ['RS256', 'ES256']),
      requiredClaims: t.required_claims,
      requireExpiration: t.require_expiration,
      clockSkewMs: t.clock_skew,
      forwardClaims: t.forward_claims as Array<[string, string]>,
      forwardToken: t.forward_token,
    }
    if (t.jwks !== undefined) policy.jwks = t.jwks
    if (t.keys !== undefined) policy.keys = t.keys
    if (t.secret_env !== undefined) policy.secretEnv = t.secret_env
    if (t.issuer !== undefined) policy.issuer = t.issuer
    if (t.audience !== undefined) policy.audience = t.audience
    return policy
  }),
)

/** [routes.jwt]: a bearer token verified against a JWKS, inline public keys or an HMAC secret. */
export const jwtPolicy: PolicyModule<JwtPolicy, 'jwt'> = {
  key: 'jwt',
  field: 'jwt',
  schema: jwtSchema,
  builtInDefault: undefined,
  weakerThan: jwtWeakerThan,
  layer: (policy, context) => jwtLayer(policy, context),
}

/** How a token failed, for the event and the error_description. */
function failureOf(error: unknown): { reason: string; description: string } {
  if (error instanceof JwksUnavailableError) return { reason: 'keys_unavailable', description: 'signing keys are not available' }
  if (error instanceof errors.JWTExpired) return { reason: 'expired', description: 'the token has expired' }
  if (error instanceof errors.JWTClaimValidationFailed) {
    switch (error.claim) {
      case 'nbf':
      case 'iat':
        return { reason: 'not_yet_valid', description: 'the token is not valid yet' }
      case 'iss':
        return { reason: 'issuer', description: 'the token has the wrong issuer' }
      case 'aud':
        return { reason: 'audience', description: 'the token has the wrong audience' }
      default:
        return { reason: 'claims', description: `the token's "${error.claim}" claim is missing or invalid` }
    }
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) return { reason: 'signature', description: 'the signature does not verify' }
  if (error instanceof errors.JOSEAlgNotAllowed || error instanceof errors.JOSENotSupported) {
    return { reason: 'algorithm', description: 'the token uses an algorithm this route does not accept' }
  }
  if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) {
    return { reason: 'unknown_key', description: 'no known key matches the token' }
  }
  return { reason: 'malformed', description: 'the token is malformed' }
}

const BEARER = /^Bearer[ ]+([A-Za-z0-9\-._~+/]+=*)[ ]*$/i

/** What follows "Bearer " (any case, one space), unchecked: a candidate for the verified tokens, which all passed BEARER. */
function asSent(authorization: string): string | undefined {
  if (authorization.length <= 7 || authorization.charCodeAt(6) !== 32) return undefined
  return authorization.startsWith('Bearer') || authorization.slice(0, 6).toLowerCase() === 'bearer' ? authorization.slice(7) : undefined
}

/** The key, or the resolver that finds it, decided once per route; HMAC secrets are read from the environment here. */
function keySource(policy: JwtPolicy, context: RouteContext): JWTVerifyGetKey | Uint8Array {
  const where = `routes.${context.route.name}.jwt`
  if (policy.secretEnv !== undefined) {
    const secret = context.gateway.host.env?.(policy.secretEnv)
    if (secret === undefined || secret === '') throw new Error(`${where}: environment variable ${policy.secretEnv} (secret_env) is not set`)
    const bytes = new TextEncoder().encode(secret)
    if (bytes.length < MIN_SECRET_BYTES) {
      throw new Error(`${where}: the secret in ${policy.secretEnv} is ${bytes.length} bytes; HMAC secrets need at least ${MIN_SECRET_BYTES}`)
    }
    return bytes
  }
  if (policy.keys !== undefined) return createLocalJWKSet({ keys: policy.keys as never })
  const url = policy.jwks!
  const remote = context.gateway.keep(`jwks:${url}`, url, () => {
    const fetchKeys = context.gateway.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init))
    return new RemoteJwks(url, { fetch: fetchKeys as typeof fetch, now: context.now, events: context.events })
  })
  return remote.getKey
}

/**
 * Verifies `Authorization: Bearer <JWT>` with jose (signature, alg allow-list, exp/nbf with clock
 * skew, issuer, audience, required claims) and answers 401 with WWW-Authenticate otherwise. The
 * verified payload goes on the exchange for rate limits; forward_claims become upstream headers,
 * and those headers are removed from what the client sent whether or not the claim is there.
 *
 * @example jwtLayer({ jwks: 'http://127.0.0.1:7001/jwks.json', algorithms: ['RS256'], ... }, context)
 */
export function jwtLayer(policy: JwtPolicy, context: RouteContext): Layer {
  const key = keySource(policy, context)
  const options: JWTVerifyOptions = {
    algorithms: policy.algorithms,
    clockTolerance: Math.ceil(policy.clockSkewMs / 1000),
    requiredClaims: policy.requireExpiration ? [...new Set(['exp', ...policy.requiredClaims])] : policy.requiredClaims,
  }
  if (policy.issuer !== undefined) options.issuer = policy.issuer
  if (policy.audience !== undefined) options.audience = policy.audience
  const { forwardClaims, forwardToken } = policy
  const route = context.route.name
  const events = context.events
  const verify = (token: string) => (key instanceof Uint8Array ? jwtVerify(token, key, options) : jwtVerify(token, key, options))
  const verified = context.keep('jwt-verified', policy, () => new VerifiedTokens())
  const skewMs = policy.clockSkewMs

  const reject = (reason: string, description: string | undefined): never => {
    events.emit('auth_reject', { route, policy: 'jwt', reason })
    const error = new GatewayError('unauthorized', description === undefined ? 'a bearer token is required' : `invalid bearer token: ${description}`)
    // RFC 6750 §3: no error code when the request carried no token at all.
    error.headers = {
      'www-authenticate': description === undefined ? 'Bearer' : `Bearer error="invalid_token", error_description="${description}"`,
    }
    throw error
  }

  /** The payload of a token not found as sent: the header checked by BEARER, then the cache again, then the signature. */
  const payloadOf = async (authorization: string, sent: string | undefined, now: number): Promise<Record<string, unknown>> => {
    const token = BEARER.exec(authorization)?.[1]
    if (token === undefined) return reject('malformed', 'the Authorization header is not "Bearer <token>"')
    const cached = token === sent ? undefined : verified.get(token, now)
    if (cached !== undefined) return cached
    let payload: Record<string, unknown>
    try {
      payload = (await verify(token)).payload
    } catch (error) {
      const { reason, description } = failureOf(error)
      return reject(reason, description)
    }
    verified.remember(token, payload, Date.now(), skewMs)
    return payload
  }

  return (next: Step) =>
    async function jwt(exchange: Exchange): Promise<Response> {
      const authorization = exchange.request.headers.get('authorization')
      if (authorization === null) return reject('missing', undefined)
      const now = Date.now()
      // Every verified token passed BEARER once: the header as clients send it is looked up without the regex over its ~1 KB.
      const sent = asSent(authorization)
      const payload = (sent === undefined ? undefined : verified.get(sent, now)) ?? (await payloadOf(authorization, sent, now))
      exchange.claims = payload
      for (const [header, claim] of forwardClaims) exchange.setUpstreamHeader(header, asHeaderValue(payload[claim]))
      if (!forwardToken) exchange.setUpstreamHeader('authorization', null)
      return next(exchange)
    }
}

declare module '../../core/events.ts' {
  interface GatewayEventMap {
    jwks_refresh: { url: string; reason: 'initial' | 'expired' | 'unknown_kid'; ok: boolean; keys: number; error?: string }
  }
}

export type { JwtPolicy }
