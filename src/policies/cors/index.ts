import { cors } from 'hono/cors'
import * as v from 'valibot'
import { expectedGot } from '../../core/config-error.ts'
import { arrayOf, boolean, table, text } from '../../core/schema-kit.ts'
import { duration } from '../../core/units.ts'
import type { Exchange, Layer, Step } from '../../proxy/exchange.ts'
import { aroundChain } from '../shared/hono-middleware.ts'
import type { PolicyModule, RouteContext } from '../policy.ts'
import { corsWeakerThan } from './strictness.ts'
import type { CorsPolicy } from './types.ts'

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/i
/** Hono cors's default allowMethods. */
const DEFAULT_METHODS = ['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'PATCH']

function origin() {
  return v.pipe(
    text(),
    v.check(
      (value) => value === '*' || (/^https?:\/\/[^/\s]+\/?$/i.test(value) && URL.canParse(value)),
      (issue) => expectedGot('"*" or an origin like "https://app.example.com" (scheme, host and port only)', issue.input),
    ),
    v.transform((value) => (value === '*' ? value : new URL(value).origin)),
  )
}

function tokens(example: string, upper: boolean) {
  return arrayOf(
    v.pipe(
      v.string((issue) => expectedGot(example, issue.input)),
      v.regex(TOKEN, (issue) => expectedGot(example, issue.input)),
      v.transform((value) => (upper ? value.toUpperCase() : value.toLowerCase())),
    ),
  )
}

/** [routes.cors]: Envoy's and Istio's corsPolicy fields, answered by Hono's cors middleware. */
export const corsPolicy: PolicyModule<CorsPolicy, 'cors'> = {
  key: 'cors',
  field: 'cors',
  schema: v.pipe(
    table({
      origins: v.pipe(arrayOf(origin()), v.minLength(1, 'expected at least one origin')),
      methods: v.optional(tokens('an HTTP method like "GET"', true), DEFAULT_METHODS),
      headers: v.optional(tokens('a header name like "content-type"', false), []),
      expose_headers: v.optional(tokens('a header name like "x-request-id"', false), []),
      max_age: v.optional(duration()),
      credentials: v.optional(boolean(), false),
    }),
    v.forward(
      v.partialCheck(
        [['origins'], ['credentials']],
        ({ origins, credentials }) => !(credentials && origins.includes('*')),
        'cannot be true with origins = ["*"]: browsers refuse credentials for a wildcard origin; list the origins',
      ),
      ['credentials'],
    ),
    v.transform((t): CorsPolicy => {
      const policy: CorsPolicy = {
        origins: t.origins.includes('*') ? ['*'] : t.origins,
        methods: t.methods,
        headers: t.headers,
        exposeHeaders: t.expose_headers,
        credentials: t.credentials,
      }
      if (t.max_age !== undefined) policy.maxAgeSeconds = Math.floor(t.max_age / 1000)
      return policy
    }),
  ),
  builtInDefault: undefined,
  weakerThan: corsWeakerThan,
  layer: (policy, context) => corsLayer(policy, context),
}

/**
 * The outermost layer. A preflight (OPTIONS with Access-Control-Request-Method) is answered here,
 * 204, and never reaches auth or the upstream. Every other answer, error answers included, gets
 * the CORS headers; the upstream's own Access-Control-* headers are replaced by the policy's. Hono's
 * cors middleware decides the headers.
 *
 * @example corsLayer({ origins: ['https://app.example'], methods: ['GET'], headers: [], exposeHeaders: [], credentials: false }, context)
 */
export function corsLayer(policy: CorsPolicy, _context: RouteContext): Layer {
  const options: Parameters<typeof cors>[0] = {
    origin: policy.origins.length === 1 ? policy.origins[0]! : policy.origins,
    allowMethods: policy.methods,
    allowHeaders: policy.headers,
    exposeHeaders: policy.exposeHeaders,
    credentials: policy.credentials,
  }
  if (policy.maxAgeSeconds !== undefined) options.maxAge = policy.maxAgeSeconds
  const middleware = cors(options)
  return (next: Step) =>
    function corsPolicy(exchange: Exchange): Promise<Response> {
      const request = exchange.request
      // Hono's cors answers every OPTIONS; one without Access-Control-Request-Method is no preflight.
      if (request.method === 'OPTIONS' && !request.headers.has('access-control-request-method')) return next(exchange)
      return aroundChain(middleware, exchange, next)
    }
}

export type { CorsPolicy }
