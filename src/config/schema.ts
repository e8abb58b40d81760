import * as v from 'valibot'
import { controlSchema } from './control.ts'
import { auditSchema } from '../observability/audit.ts'
import { observabilitySchema } from '../observability/config.ts'
import { policyEntries } from '../policies/index.ts'
import { cidrList } from '../policies/ip/index.ts'
import { redisSchema } from '../policies/rate-limit/redis-config.ts'
import { describeValue, expectedGot } from '../core/config-error.ts'
import { convertedString, duration, type Conversion } from '../core/units.ts'
import { arrayOf, httpMethods, name, namedTables, oneOf, table, text } from '../core/schema-kit.ts'
import type { PathRewrite } from '../proxy/rewrite.ts'
import { PATH_EXAMPLE, toRoutePath } from '../listener/router.ts'
import { upstreamSchema } from '../upstream/config.ts'
import { ALLOWED_SAN_EXAMPLE, toAllowedSan } from '../listener/client-names.ts'
import { HOST_NAME, IPV6, isLoopback, parseHostPort, type HostPort } from '../core/address.ts'

/** The policy file as written, validated; load.ts turns its output into the normalized Config. */

/** An admin listener others can reach shows the config and can reload it: it must ask for a token. */
export const ADMIN_TOKEN_REQUIRED =
  'required when [gateway] admin is not a loopback address: name the environment variable that holds the admin bearer token'

const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/i

const HOST_PORT_EXAMPLE = '"host:port" with a port from 0 to 65535, like "0.0.0.0:8080" or "[::1]:8080"'

function hostPort() {
  return convertedString(HOST_PORT_EXAMPLE, (address): Conversion<HostPort> => {
    const parsed = parseHostPort(address)
    if (parsed) return { value: parsed }
    const hint = !address.startsWith('[') && address.split(':').length > 2 ? ' (put IPv6 addresses in brackets)' : ''
    return { problem: expectedGot(HOST_PORT_EXAMPLE, address) + hint }
  })
}

const STRIP_PREFIX_EXAMPLE = 'a literal path prefix like "/payments"'

function toStripPrefix(prefix: string): Conversion<string> {
  if (!prefix.startsWith('/') || /[?#*:\s]/.test(prefix)) return { problem: expectedGot(STRIP_PREFIX_EXAMPLE, prefix) }
  return { value: prefix.length > 1 ? prefix.replace(/\/+$/, '') : prefix }
}

/** Whether some path the route matches starts with `prefix`; otherwise strip_prefix could never apply. */
function prefixCanMatch(path: string, prefix: string): boolean {
  if (prefix === '/') return true
  const pathSegments = path.slice(1).split('/')
  const prefixSegments = prefix.slice(1).split('/')
  for (const [index, prefixSegment] of prefixSegments.entries()) {
    const pathSegment = pathSegments[index]
    if (pathSegment === '*') return true
    if (pathSegment === undefined) return false
    if (!pathSegment.startsWith(':') && pathSegment !== prefixSegment) return false
  }
  return true
}

const REWRITE_PREFIX_EXAMPLE = 'a path prefix like "/v2"'

/** rewrite = { prefix = "/v2" } or { regex = "^/users/([0-9]+)$", replacement = "/u/$1" }, or both (regex first). */
function rewriteSchema() {
  const prefix = convertedString(REWRITE_PREFIX_EXAMPLE, (text): Conversion<string> => {
    const dotSegment = /(?:^|\/)\.{1,2}(?:\/|$)/.test(text)
    return text.startsWith('/') && !/[?#*\s%]/.test(text) && !dotSegment ? { value: text } : { problem: expectedGot(`${REWRITE_PREFIX_EXAMPLE}, without dot segments`, text) }
  })
  const pattern = convertedString('a regular expression', (text): Conversion<string> => {
    try {
      new RegExp(text)
      return { value: text }
    } catch (error) {
      return { problem: `expected a regular expression, got ${describeValue(text)}: ${(error as Error).message}` }
    }
  })
  return v.pipe(
    table({ prefix: v.optional(prefix), regex: v.optional(pattern), replacement: v.optional(v.string((issue) => expectedGot('a string', issue.input))) }),
    v.check((t) => t.prefix !== undefined || t.regex !== undefined, 'expected prefix, or regex with replacement'),
    v.forward(
      v.partialCheck([['regex'], ['replacement']], ({ regex, replacement }) => (regex === undefined) === (replacement === undefined), 'expected regex and replacement together'),
      ['replacement'],
    ),
    v.transform((t): PathRewrite => {
      const rewrite: PathRewrite = {}
      if (t.prefix !== undefined) rewrite.prefix = t.prefix
      if (t.regex !== undefined) rewrite.regex = { pattern: t.regex, replacement: t.replacement! }
      return rewrite
    }),
  )
}

const HOST_EXAMPLE = 'a host name like "api.example.com" or "*.example.com"'

/** Lower-case; IPv6 without brackets, as the router compares it; "*.example.com" matches any name below example.com. */
function toRouteHost(text: string): Conversion<string> {
  const host = text.toLowerCase()
  if (host.includes('://')) return { problem: expectedGot(`${HOST_EXAMPLE} without a scheme`, text) }
  const ipv6 = /^\[(.*)\]$/.exec(host)?.[1]
  if (ipv6 !== undefined) return IPV6.test(ipv6) ? { value: ipv6 } : { problem: expectedGot(HOST_EXAMPLE, text) }
  if (host.includes(':')) return { problem: expectedGot(`${HOST_EXAMPLE} without a port (routes match any port)`, text) }
  const name = host.startsWith('*.') ? host.slice(2) : host
  if (name.includes('*')) return { problem: expectedGot(`${HOST_EXAMPLE}, with "*" only as the whole first label`, text) }
  return HOST_NAME.test(name) ? { value: host } : { problem: expectedGot(HOST_EXAMPLE, text) }
}

function headerMatches() {
  const headerName = v.pipe(
    v.string(),
    v.regex(TOKEN, (issue) => expectedGot('a header name like "x-tenant"', issue.input)),
  )
  const headerValue = v.string((issue) => expectedGot('a string', issue.input))
  return v.pipe(
    v.record(headerName, headerValue, (issue) => expectedGot('a table like { "x-tenant" = "acme" }', issue.input)),
    v.transform((headers) =>
      Object.entries(headers).map(([headerName, value]): [string, string] => [headerName.toLowerCase(), value]),
    ),
  )
}

/** What a listener speaks: HTTP/1.1, HTTP/2 in cleartext with prior knowledge, HTTP/2 over TLS by ALPN. */
export const LISTENER_PROTOCOLS = ['http1', 'h2c', 'h2'] as const

const gatewaySchema = v.pipe(
  table({
    service: text(),
    admin: v.optional(hostPort(), '127.0.0.1:9901'),
    shutdown_grace: v.optional(duration(), '10s'),
    // Without it: 60 s on Node, none on Bun and Deno (listener-setup.ts says why).
    header_timeout: v.optional(duration()),
    trusted_proxies: v.optional(cidrList(), []),
    admin_token_env: v.optional(text()),
    // Read-only /healthz, /readyz and /metrics without a token, for the kubelet and Prometheus on the pod IP.
    probes: v.optional(hostPort()),
  }),
  // An admin listener others can reach shows the config and can reload it: it must ask for a token.
  v.forward(
    v.partialCheck([['admin'], ['admin_token_env']], ({ admin, admin_token_env }) => admin_token_env !== undefined || isLoopback(admin.host), ADMIN_TOKEN_REQUIRED),
    ['admin_token_env'],
  ),
)

const listenerTlsSchema = v.pipe(
  table({
    cert: text(),
    key: text(),
    client_ca: v.optional(text()),
    allowed_sans: v.optional(
      v.pipe(arrayOf(convertedString(ALLOWED_SAN_EXAMPLE, toAllowedSan)), v.minLength(1, 'expected at least one subject alternative name, got none')),
    ),
  }),
  // Names are read off a certificate only once client_ca has verified it.
  v.forward(
    v.partialCheck(
      [['client_ca'], ['allowed_sans']],
      ({ client_ca, allowed_sans }) => allowed_sans === undefined || client_ca !== undefined,
      'needs client_ca: only a client certificate verified against it has names worth checking',
    ),
    ['allowed_sans'],
  ),
)

const listenerSchema = v.pipe(
  table({
    listen: hostPort(),
    direction: oneOf(['ingress', 'egress']),
    tls: v.optional(listenerTlsSchema),
    header_timeout: v.optional(duration()),
    protocols: v.optional(
      v.pipe(
        arrayOf(oneOf(LISTENER_PROTOCOLS)),
        v.minLength(1, 'expected at least one protocol, like ["http1", "h2c"]'),
        v.check((list) => new Set(list).size === list.length, 'expected each protocol once'),
      ),
    ),
  }),
  // h2c is HTTP/2 in cleartext, h2 is HTTP/2 chosen by ALPN inside TLS: each belongs to one kind of listener.
  v.forward(
    v.partialCheck([['tls'], ['protocols']], ({ tls, protocols }) => tls === undefined || !protocols?.includes('h2c'), 'h2c is cleartext HTTP/2: on a TLS listener write "h2" (chosen by ALPN)'),
    ['protocols'],
  ),
  v.forward(
    v.partialCheck([['tls'], ['protocols']], ({ tls, protocols }) => tls !== undefined || !protocols?.includes('h2'), 'h2 is HTTP/2 over TLS and needs tls = { cert, key }: without TLS write "h2c"'),
    ['protocols'],
  ),
)

/** A route's own keys: what it matches and where it goes. Its policies' keys come from the registry. */
const routeOwnKeys = {
  name: v.optional(name()),
  listener: text(),
  path: convertedString(PATH_EXAMPLE, toRoutePath),
  methods: v.optional(httpMethods()),
  host: v.optional(convertedString(HOST_EXAMPLE, toRouteHost)),
  strip_prefix: v.optional(convertedString(STRIP_PREFIX_EXAMPLE, toStripPrefix)),
  rewrite: v.optional(rewriteSchema()),
  headers: v.optional(headerMatches()),
  upstream: v.optional(text()),
}

/** The policies' keys are known to the registry only; split and sticky decide, with upstream, where a route goes. */
type RouteTable = v.InferOutput<v.StrictObjectSchema<typeof routeOwnKeys, undefined>> & { split?: unknown; sticky?: unknown } & Record<string, unknown>

const routeSchema = v.pipe(
  table({ ...routeOwnKeys, ...policyEntries('route') }) as unknown as v.GenericSchema<unknown, RouteTable>,
  // A route goes to one upstream, or splits its traffic over several: exactly one of the two.
  v.forward(
    v.partialCheck([['upstream'], ['split']], ({ upstream, split }) => upstream !== undefined || split !== undefined, 'required key missing'),
    ['upstream'],
  ),
  v.forward(
    v.partialCheck([['upstream'], ['split']], ({ upstream, split }) => upstream === undefined || split === undefined, 'expected upstream or split, not both'),
    ['split'],
  ),
  v.forward(
    v.partialCheck([['split'], ['sticky']], ({ split, sticky }) => sticky === undefined || split !== undefined, 'applies to split routes only (add [[routes.split]] entries)'),
    ['sticky'],
  ),
  v.forward(
    v.partialCheck(
      [['path'], ['strip_prefix']] as const,
      ({ path, strip_prefix }) => strip_prefix === undefined || prefixCanMatch(path, strip_prefix),
      (issue) => `${describeValue(issue.input.strip_prefix)} can never be stripped: it is not a prefix of path ${describeValue(issue.input.path)}`,
    ),
    ['strip_prefix'],
  ),
)

export const configFileSchema = table({
  gateway: gatewaySchema,
  listeners: v.pipe(
    namedTables(listenerSchema),
    v.check((listeners) => Object.keys(listeners).length > 0, 'expected at least one listener, got none'),
  ),
  upstreams: v.optional(namedTables(upstreamSchema), () => ({})),
  defaults: v.optional(table(policyEntries('defaults')), () => ({})),
  routes: v.optional(
    v.array(routeSchema, (issue) => expectedGot('an array of tables, written [[routes]]', issue.input)),
    () => [],
  ),
  control: v.optional(controlSchema),
  observability: v.optional(observabilitySchema),
  audit: v.optional(auditSchema),
  redis: v.optional(redisSchema),
})

export type ConfigFile = v.InferOutput<typeof configFileSchema>

const EXPECTED_TYPE: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  boolean: 'a boolean',
  Array: 'an array',
  Object: 'a table',
}

/** Fallback for issues whose schema has no message of its own: valibot's wording, in the file's terms. */
export function issueMessage(issue: v.BaseIssue<unknown>): string {
  const expected = issue.expected ?? 'something else'
  return expectedGot(EXPECTED_TYPE[expected] ?? expected, issue.input)
}
