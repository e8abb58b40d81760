import { parse as parseToml } from 'toml'
import * as v from 'valibot'
import { normalizeObservability } from '../observability/config.ts'
import { builtInPolicies, pickPolicies } from '../policies/index.ts'
import { redisStoreProblems } from '../policies/rate-limit/config.ts'
import { ConfigError, type ConfigProblem } from '../core/config-error.ts'
import { configFileSchema, issueMessage, parseHostPort, type ConfigFile } from './schema.ts'
import type { ListenerTls } from '../security/types.ts'
import type { Config, ListenerConfig, RouteConfig, RoutePolicies, UpstreamConfig } from './types.ts'

/** Parses, validates and normalizes a policy file; every problem in it is reported in one ConfigError. */
export function loadConfigText(text: string, source: string): Config {
  const document = parseDocument(text, source)
  const result = v.safeParse(configFileSchema, document, { abortEarly: false, message: issueMessage })
  const problems = [...(result.issues ?? []).map(issueToProblem), ...crossReferenceProblems(document)]
  if (!result.success || problems.length > 0) throw new ConfigError(source, problems)
  return normalize(result.output, source)
}

function parseDocument(text: string, source: string): unknown {
  try {
    return parseToml(text)
  } catch (error) {
    throw new ConfigError(source, [syntaxProblem(error)])
  }
}

interface TomlParseError {
  message?: string
  location?: { start?: { line?: number; column?: number } }
  line?: number
  column?: number
  found?: string | null
  expected?: Array<{ type: string; text?: string }>
}

/** Peggy errors list every token the grammar could take; a reader needs the few that matter. */
function syntaxProblem(error: unknown): ConfigProblem {
  const details = (typeof error === 'object' && error !== null ? error : {}) as TomlParseError
  const line = details.location?.start?.line ?? details.line
  const column = details.location?.start?.column ?? details.column
  const message = details.expected ? describeUnexpected(details) : sentence(String(details.message ?? error))
  return { path: '', message: `TOML syntax error: ${message}`, line, column }
}

const CLOSING_TOKENS = new Set(['=', ',', ']', '}'])

/** "Cannot redefine existing key 'a'." → "cannot redefine existing key 'a'", to sit after a colon. */
function sentence(message: string): string {
  return message.charAt(0).toLowerCase() + message.slice(1).replace(/\.$/, '')
}

function describeUnexpected({ found, expected = [] }: TomlParseError): string {
  const lineEnded = found === null || found === undefined || /^[\r\n]/.test(found)
  const foundText = found === null || found === undefined ? 'end of file' : lineEnded ? 'end of line' : JSON.stringify(found)
  const literals = new Set(expected.flatMap((item) => (item.type === 'literal' && item.text !== undefined ? [item.text] : [])))
  const valueExpected = literals.has('true')
  if (lineEnded && !valueExpected && (literals.has('"') || literals.has("'"))) return 'unterminated string'
  const wanted = [...literals].filter((literal) => CLOSING_TOKENS.has(literal)).map((literal) => JSON.stringify(literal))
  if (valueExpected) wanted.push('a value')
  return wanted.length > 0 ? `unexpected ${foundText}, expected ${wanted.join(' or ')}` : `unexpected ${foundText}`
}

function issueToProblem(issue: v.BaseIssue<unknown>): ConfigProblem {
  return { path: formatPath(issue.path ?? []), message: issue.message }
}

const BARE_KEY = /^[a-z0-9_-]+$/i

/** `routes[1].upstream`, `listeners."bad name"`: the path as TOML would spell it. */
export function formatPath(path: ReadonlyArray<{ key: unknown }>): string {
  let formatted = ''
  for (const { key } of path) {
    if (typeof key === 'number') formatted += `[${key}]`
    else {
      const name = String(key)
      const part = BARE_KEY.test(name) ? name : JSON.stringify(name)
      formatted += formatted === '' ? part : `.${part}`
    }
  }
  return formatted
}

/**
 * Checks across tables. They read the raw document, so a route with an unknown upstream is
 * reported even when other keys of the file are broken.
 */
function crossReferenceProblems(document: unknown): ConfigProblem[] {
  if (!isTable(document)) return []
  const listeners = isTable(document.listeners) ? document.listeners : {}
  const upstreams = isTable(document.upstreams) ? document.upstreams : {}
  const routes = Array.isArray(document.routes) ? document.routes : []
  return [
    ...addressConflicts(document.gateway, listeners),
    ...routeProblems(routes, Object.keys(listeners), Object.keys(upstreams)),
    ...fallbackUpstreamProblem(document.defaults, 'defaults', Object.keys(upstreams)),
    ...mirrorUpstreamProblem(document.defaults, 'defaults', Object.keys(upstreams)),
    ...auditRouteProblems(document.audit, routes),
    ...redisStoreProblems(document),
  ]
}

/** `mirror.upstream` names an upstream, in [defaults] as in a route. */
function mirrorUpstreamProblem(table: unknown, at: string, upstreamNames: string[]): ConfigProblem[] {
  const mirror = isTable(table) && isTable(table.mirror) ? table.mirror : undefined
  const missing = missingReference('upstream', mirror?.upstream, upstreamNames)
  return missing ? [{ path: `${at}.mirror.upstream`, message: missing }] : []
}

/** Each `[[routes.split]]` entry names an upstream. */
function splitUpstreamProblems(route: Record<string, unknown>, at: string, upstreamNames: string[]): ConfigProblem[] {
  if (!Array.isArray(route.split)) return []
  return route.split.flatMap((entry: unknown, index) => {
    const missing = isTable(entry) ? missingReference('upstream', entry.upstream, upstreamNames) : undefined
    return missing ? [{ path: `${at}.split[${index}].upstream`, message: missing }] : []
  })
}

/** `[audit] routes` names routes. */
function auditRouteProblems(audit: unknown, routes: unknown[]): ConfigProblem[] {
  if (!isTable(audit) || !Array.isArray(audit.routes)) return []
  const routeNames = routes.map((route, index) => (isTable(route) && typeof route.name === 'string' ? route.name : defaultRouteName(index)))
  return audit.routes.flatMap((name: unknown, index) => {
    const missing = missingReference('route', name, routeNames)
    return missing ? [{ path: `audit.routes[${index}]`, message: missing }] : []
  })
}

/** `fallback.upstream` names an upstream, in [defaults] as in a route. */
function fallbackUpstreamProblem(table: unknown, at: string, upstreamNames: string[]): ConfigProblem[] {
  const fallback = isTable(table) && isTable(table.fallback) ? table.fallback : undefined
  const missing = missingReference('upstream', fallback?.upstream, upstreamNames)
  return missing ? [{ path: `${at}.fallback.upstream`, message: missing }] : []
}

/** Two sockets on one address cannot both bind; port 0 always gets a fresh port. */
function addressConflicts(gateway: unknown, listeners: Record<string, unknown>): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  const owners = new Map<string, string>()
  const admin = isTable(gateway) && typeof gateway.admin === 'string' ? gateway.admin : '127.0.0.1:9901'
  const claim = (address: unknown, owner: string): void => {
    const parsed = typeof address === 'string' ? parseHostPort(address) : undefined
    if (parsed === undefined || parsed.port === 0) return
    const key = `${parsed.host}:${parsed.port}`
    const previous = owners.get(key)
    if (previous === undefined) owners.set(key, owner)
    else problems.push({ path: owner, message: `address ${JSON.stringify(address)} is already used by ${previous}` })
  }
  claim(admin, 'gateway.admin')
  for (const [name, listener] of Object.entries(listeners)) {
    if (isTable(listener)) claim(listener.listen, `${formatPath([{ key: 'listeners' }, { key: name }])}.listen`)
  }
  return problems
}

function routeProblems(routes: unknown[], listenerNames: string[], upstreamNames: string[]): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  const namedAt = new Map<string, number>()
  for (const [index, route] of routes.entries()) {
    if (!isTable(route)) continue
    const at = `routes[${index}]`
    const missingListener = missingReference('listener', route.listener, listenerNames)
    if (missingListener) problems.push({ path: `${at}.listener`, message: missingListener })
    const missingUpstream = missingReference('upstream', route.upstream, upstreamNames)
    if (missingUpstream) problems.push({ path: `${at}.upstream`, message: missingUpstream })
    problems.push(...fallbackUpstreamProblem(route, at, upstreamNames))
    problems.push(...mirrorUpstreamProblem(route, at, upstreamNames), ...splitUpstreamProblems(route, at, upstreamNames))
    const name = route.name ?? defaultRouteName(index)
    if (typeof name !== 'string') continue
    const first = namedAt.get(name)
    if (first === undefined) namedAt.set(name, index)
    else problems.push({ path: `${at}.name`, message: `duplicate route name ${JSON.stringify(name)} (also routes[${first}])` })
  }
  return problems
}

function missingReference(kind: string, name: unknown, defined: string[]): string | undefined {
  if (typeof name !== 'string' || name === '' || defined.includes(name)) return undefined
  return `no ${kind} named ${JSON.stringify(name)} (defined: ${defined.length > 0 ? defined.join(', ') : 'none'})`
}

function defaultRouteName(index: number): string {
  return `route-${index}`
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date)
}

type UpstreamFile = ConfigFile['upstreams'][string]

function normalizeUpstream(name: string, upstream: UpstreamFile, source: string): UpstreamConfig {
  const { endpoints = [], weights, outlier, health_check, discovery } = upstream
  const normalized: UpstreamConfig = {
    name,
    endpoints: endpoints.map((url, index) => ({ url, weight: weights?.[index] ?? 1 })),
    balance: upstream.balance,
    connectTimeoutMs: upstream.connect_timeout,
  }
  if (upstream.ca !== undefined) normalized.ca = besidePolicyFile(upstream.ca, source)
  if (outlier !== undefined) {
    normalized.outlier = {
      consecutiveFailures: outlier.consecutive_failures,
      baseEjectionMs: outlier.base_ejection,
      maxEjectionMs: outlier.max_ejection,
      maxEjectedPercent: outlier.max_ejected_percent,
    }
  }
  if (health_check !== undefined) {
    normalized.healthCheck = {
      path: health_check.path,
      intervalMs: health_check.interval,
      timeoutMs: health_check.timeout,
      unhealthyThreshold: health_check.unhealthy_threshold,
      healthyThreshold: health_check.healthy_threshold,
    }
  }
  if (discovery?.dns !== undefined) {
    const { host, port } = discovery.dns
    normalized.discovery = { dns: { host, port, scheme: discovery.scheme ?? 'http', refreshMs: discovery.refresh } }
  } else if (discovery?.file !== undefined) {
    normalized.discovery = { file: { path: besidePolicyFile(discovery.file, source), refreshMs: discovery.refresh } }
  }
  return normalized
}

/**
 * A relative path in the policy file means relative to that file, as nginx's include and Envoy's
 * path-based configs do, not to wherever the gateway was started. The result is relative to the
 * same place `source` is (absolute if it is); the file itself is read only when the upstream starts,
 * so `pillion check` passes before it exists.
 */
export function besidePolicyFile(path: string, source: string): string {
  if (path.startsWith('/') || /^[a-z]:[\\/]/i.test(path) || path.startsWith('\\\\')) return path
  const slash = Math.max(source.lastIndexOf('/'), source.lastIndexOf('\\'))
  return slash === -1 ? path : `${source.slice(0, slash + 1)}${path}`
}

/** Files a policy names (api_key.keys_file) are relative to the policy file, as discovery files are. */
function withPolicyFiles(policies: Partial<RoutePolicies>, source: string): Partial<RoutePolicies> {
  if (policies.apiKey === undefined) return policies
  return { ...policies, apiKey: { ...policies.apiKey, keysFile: besidePolicyFile(policies.apiKey.keysFile, source) } }
}

function listenerTls(tls: { cert: string; key: string; client_ca?: string | undefined }, source: string): ListenerTls {
  const resolved: ListenerTls = { cert: besidePolicyFile(tls.cert, source), key: besidePolicyFile(tls.key, source) }
  if (tls.client_ca !== undefined) resolved.clientCa = besidePolicyFile(tls.client_ca, source)
  return resolved
}

function normalize(file: ConfigFile, source: string): Config {
  const defaults = withPolicyFiles(pickPolicies(file.defaults), source)
  const inherited = { ...builtInPolicies(), ...defaults }
  const listeners: Record<string, ListenerConfig> = {}
  for (const [name, { listen, direction, tls }] of Object.entries(file.listeners)) {
    listeners[name] = { name, host: listen.host, port: listen.port, direction }
    if (tls !== undefined) listeners[name].tls = listenerTls(tls, source)
  }
  const upstreams: Record<string, UpstreamConfig> = {}
  for (const [name, upstream] of Object.entries(file.upstreams)) upstreams[name] = normalizeUpstream(name, upstream, source)
  const routes = file.routes.map((route, index): RouteConfig => {
    const normalized: RouteConfig = {
      index,
      name: route.name ?? defaultRouteName(index),
      listener: route.listener,
      path: route.path,
      // The schema insists on one of upstream and split.
      upstream: route.upstream ?? route.split![0]!.upstream,
      policies: { ...inherited, ...withPolicyFiles(pickPolicies(route), source) },
    }
    if (route.split !== undefined) normalized.split = route.sticky === undefined ? { backends: route.split } : { backends: route.split, sticky: route.sticky }
    if (route.host !== undefined) normalized.host = route.host
    if (route.methods !== undefined) normalized.methods = route.methods
    if (route.headers !== undefined) normalized.headers = route.headers
    if (route.strip_prefix !== undefined) normalized.stripPrefix = route.strip_prefix
    return normalized
  })
  const { service, admin, shutdown_grace, trusted_proxies, admin_token_env } = file.gateway
  const gateway: Config['gateway'] = { service, admin, shutdownGraceMs: shutdown_grace }
  if (trusted_proxies.length > 0) gateway.trustedProxies = trusted_proxies
  if (admin_token_env !== undefined) gateway.adminTokenEnv = admin_token_env
  const config: Config = { source, gateway, listeners, upstreams, defaults, routes }
  if (file.control !== undefined) config.control = { ...file.control, cache: file.control.cache && besidePolicyFile(file.control.cache, source) }
  if (file.observability !== undefined) {
    config.observability = normalizeObservability(file.observability, service, (path) => besidePolicyFile(path, source))
  }
  if (file.audit !== undefined) config.audit = file.audit
  if (file.redis !== undefined) config.redis = file.redis
  return config
}
