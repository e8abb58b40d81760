import { secureHeaders } from 'hono/secure-headers'
import * as v from 'valibot'
import { expectedGot } from '../../core/config-error.ts'
import { arrayOf, table, text } from '../../core/schema-kit.ts'
import type { Exchange, Layer, Step } from '../../proxy/exchange.ts'
import { aroundChain } from '../shared/hono-middleware.ts'
import type { PolicyModule } from '../policy.ts'
import { carryTrailers } from '../../core/trailers.ts'

export { responseHeadersLayer, responseHeadersPolicy } from './header-rules.ts'

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/i

/** Hono secureHeaders' single-value headers, by the snake_case key the policy file uses. */
const HEADER_OPTIONS = {
  cross_origin_embedder_policy: 'crossOriginEmbedderPolicy',
  cross_origin_resource_policy: 'crossOriginResourcePolicy',
  cross_origin_opener_policy: 'crossOriginOpenerPolicy',
  origin_agent_cluster: 'originAgentCluster',
  referrer_policy: 'referrerPolicy',
  strict_transport_security: 'strictTransportSecurity',
  x_content_type_options: 'xContentTypeOptions',
  x_dns_prefetch_control: 'xDnsPrefetchControl',
  x_download_options: 'xDownloadOptions',
  x_frame_options: 'xFrameOptions',
  x_permitted_cross_domain_policies: 'xPermittedCrossDomainPolicies',
  x_xss_protection: 'xXssProtection',
} as const

const headerSetting = v.union(
  [v.boolean(), v.pipe(v.string(), v.regex(/^[\x20-\x7e]+$/, 'expected a printable header value'))],
  (issue) => expectedGot('true, false or a header value', issue.input),
)

const cspDirective = /^[a-z]+(?:-[a-z]+)*$/

const secureHeadersTable = table({
  ...(Object.fromEntries(Object.keys(HEADER_OPTIONS).map((key) => [key, v.optional(headerSetting)])) as Record<
    keyof typeof HEADER_OPTIONS,
    v.OptionalSchema<typeof headerSetting, undefined>
  >),
  content_security_policy: v.optional(
    v.record(
      v.pipe(v.string(), v.regex(cspDirective, (issue) => expectedGot('a directive like "default-src"', issue.input))),
      arrayOf(text()),
      (issue) => expectedGot(`a table like { default-src = ["'self'"] }`, issue.input),
    ),
  ),
})

const camel = (kebab: string) => kebab.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase())

/**
 * [routes.secure_headers] (or `secure_headers = true`): Hono's secureHeaders defaults (HSTS,
 * nosniff, X-Frame-Options SAMEORIGIN, ...), set only where the upstream did not set its own.
 */
export const secureHeadersPolicy: PolicyModule<SecureHeadersPolicy, 'secureHeaders'> = {
  key: 'secure_headers',
  field: 'secureHeaders',
  schema: v.union(
    [
      v.pipe(
        v.boolean(),
        v.transform((on): SecureHeadersPolicy => (on ? {} : false)),
      ),
      v.pipe(
        secureHeadersTable,
        v.transform((t): SecureHeadersPolicy => {
          const options: Record<string, boolean | string | Record<string, string[]>> = {}
          for (const [key, option] of Object.entries(HEADER_OPTIONS)) {
            const value = t[key as keyof typeof HEADER_OPTIONS]
            if (value !== undefined) options[option] = value
          }
          if (t.content_security_policy !== undefined) {
            options.contentSecurityPolicy = Object.fromEntries(Object.entries(t.content_security_policy).map(([d, s]) => [camel(d), s]))
          }
          return options
        }),
      ),
    ],
    (issue) => expectedGot('true, false or a table of headers', issue.input),
  ),
  builtInDefault: undefined,
  layer: (policy) => (policy ? secureHeadersLayer(policy) : undefined),
}

/** strip_response_headers = ["server", "x-powered-by"]: removed from every upstream answer. */
export const stripResponseHeadersPolicy: PolicyModule<string[], 'stripResponseHeaders'> = {
  key: 'strip_response_headers',
  field: 'stripResponseHeaders',
  schema: arrayOf(
    v.pipe(
      v.string((issue) => expectedGot('a header name like "server"', issue.input)),
      v.regex(TOKEN, (issue) => expectedGot('a header name like "server"', issue.input)),
      v.toLowerCase(),
    ),
  ),
  builtInDefault: undefined,
  layer: (names) => (names.length > 0 ? stripResponseHeadersLayer(names) : undefined),
}

/**
 * Hono's secureHeaders around the rest of the chain: added where the upstream did not set its own,
 * error answers included.
 *
 * @example secureHeadersLayer({ xFrameOptions: 'DENY' })
 */
export function secureHeadersLayer(secure: Exclude<SecureHeadersPolicy, false>): Layer {
  const middleware = secureHeaders({ ...secure, overwrite: false, removePoweredBy: false })
  return (next: Step) =>
    function addSecureHeaders(exchange: Exchange): Promise<Response> {
      return aroundChain(middleware, exchange, next)
    }
}

/**
 * Upstream headers that reveal the stack, removed from every answer. It sits outside secure_headers
 * in the chain, so a header named in both is removed.
 *
 * @example stripResponseHeadersLayer(['server', 'x-powered-by'])
 */
export function stripResponseHeadersLayer(names: readonly string[]): Layer {
  return (next: Step) =>
    async function stripResponseHeaders(exchange: Exchange): Promise<Response> {
      const response = await next(exchange)
      try {
        // In place: the chain's answers are its own Responses, and the same object keeps the forwarder's buffered answer recognised.
        for (const name of names) response.headers.delete(name)
        return response
      } catch {
        // Immutable headers (a Response straight from fetch): a copy without them.
        const headers = new Headers(response.headers)
        for (const name of names) headers.delete(name)
        return carryTrailers(response, new Response(response.body, { status: response.status, statusText: response.statusText, headers }))
      }
    }
}

/**
 * Hono secureHeaders options (camelCase, as Hono names them): true keeps Hono's value, a string
 * replaces it, false leaves the header out; contentSecurityPolicy maps camelCase directives to
 * sources. false for the whole policy turns it off (a route overriding [defaults]).
 */
export type SecureHeadersPolicy = Record<string, boolean | string | Record<string, string[]>> | false
