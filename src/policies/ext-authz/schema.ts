import * as v from 'valibot'
import { expectedGot } from '../../core/config-error.ts'
import { arrayOf, integer, oneOf, positiveDuration, table, text } from '../../core/schema-kit.ts'
import { size } from '../../core/units.ts'
import { headerName, valueProblem } from '../shared/header-edits.ts'

/** Envoy ext_authz's timeout: an authorizer is on every request's path, so it must answer fast. */
const DEFAULT_TIMEOUT = '200ms'
/** What most authorizers read: a bearer token or a session cookie (Envoy sends Authorization alone). */
const DEFAULT_HEADERS = ['authorization', 'cookie']
/** What a login redirect or a challenge needs to work in the client (Envoy and Traefik pass every header). */
const DEFAULT_CLIENT_HEADERS = ['content-type', 'www-authenticate', 'location', 'set-cookie', 'retry-after']
/** Decisions remembered per route, at most; the oldest go first. */
const DEFAULT_CACHE_ENTRIES = 10_000

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/i

function anyHeaderName(example: string) {
  return v.pipe(
    v.string((issue) => expectedGot(`a header name like "${example}"`, issue.input)),
    v.regex(TOKEN, (issue) => expectedGot(`a header name like "${example}"`, issue.input)),
    v.toLowerCase(),
  )
}

function serviceUrl() {
  return v.pipe(
    text(),
    v.check((url) => /^https?:\/\/[^/\s]+/i.test(url) && URL.canParse(url), (issue) => expectedGot('an http(s) URL like "http://127.0.0.1:9000/check"', issue.input)),
  )
}

/** A cache key made of variables, `"${header.authorization}"`: checked at load like a header value template. */
function cacheKey() {
  return v.pipe(
    v.string((issue) => expectedGot('a key like "${header.authorization}"', issue.input)),
    v.rawCheck(({ dataset, addIssue }) => {
      if (!dataset.typed) return
      const problem = valueProblem(dataset.value)
      if (problem !== undefined) addIssue({ message: problem })
      else if (!dataset.value.includes('${')) addIssue({ message: 'expected a key with a variable, like "${header.authorization}"; a constant key would share one decision among all requests' })
    }),
  )
}

const cacheSchema = table({
  key: cacheKey(),
  ttl: positiveDuration(),
  max_entries: v.optional(integer(1), DEFAULT_CACHE_ENTRIES),
})

export const extAuthzSchema = v.pipe(
  table({
    url: serviceUrl(),
    headers: v.optional(arrayOf(v.pipe(headerName(), v.toLowerCase())), DEFAULT_HEADERS),
    upstream_headers: v.optional(arrayOf(v.pipe(headerName(), v.toLowerCase())), []),
    client_headers: v.optional(arrayOf(anyHeaderName('www-authenticate')), DEFAULT_CLIENT_HEADERS),
    timeout: v.optional(positiveDuration(), DEFAULT_TIMEOUT),
    on_error: v.optional(oneOf(['deny', 'allow']), 'deny'),
    include_body: v.optional(size(), 0),
    cache: v.optional(cacheSchema),
    ca: v.optional(text()),
  }),
  v.transform((t): ExtAuthzPolicy => {
    const policy: ExtAuthzPolicy = {
      url: t.url,
      headers: [...new Set(t.headers)],
      upstreamHeaders: [...new Set(t.upstream_headers)],
      clientHeaders: [...new Set(t.client_headers)],
      timeoutMs: t.timeout,
      onError: t.on_error,
      includeBodyBytes: t.include_body!, // the default goes through size(), so it is a number
    }
    if (t.ca !== undefined) policy.ca = t.ca
    if (t.cache !== undefined) policy.cache = { key: t.cache.key, ttlMs: t.cache.ttl, maxEntries: t.cache.max_entries }
    return policy
  }),
)

/** [routes.ext_authz]: an HTTP authorization service asked about each request. */
export interface ExtAuthzPolicy {
  url: string
  /** Request headers sent to the authorizer (lower-case). */
  headers: string[]
  /** Headers of the authorizer's 2xx answer set on the upstream request; the client's own are removed. */
  upstreamHeaders: string[]
  /** Headers of any other answer passed to the client with it. */
  clientHeaders: string[]
  timeoutMs: number
  /** What a failed or slow authorizer means: refuse (503), or let the request through. */
  onError: 'deny' | 'allow'
  /** Send this many first bytes of the body (0: none). */
  includeBodyBytes: number
  /** PEM file of the CA that signs an https authorizer's certificate, instead of the system's; relative to the policy file. */
  ca?: string
  /** Decisions remembered by a key for a short time; errors never are. */
  cache?: { key: string; ttlMs: number; maxEntries: number }
}
