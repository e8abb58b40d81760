import { parse as parseToml } from 'toml'
import * as v from 'valibot'
import { normalizeObservability } from '../observability/config.ts'
import { parseHostPort } from '../core/address.ts'
import { ConfigError, missingReference, type ConfigProblem } from '../core/config-error.ts'
import { besidePolicyFile } from '../core/policy-file.ts'
import { builtInPolicies, pickPolicies, policyReferenceProblems, resolvePolicyFiles } from '../policies/index.ts'
import type { FileFacts } from '../policies/policy.ts'
import { isTable } from '../policies/shared/references.ts'
import { normalizeUpstream, type UpstreamConfig } from '../upstream/config.ts'
import { configFileSchema, issueMessage, type ConfigFile } from './schema.ts'
import { isUrl, type ControlConfig } from './control.ts'
import { applyBase, type LockedBase } from './locks.ts'
import { withTomlHint } from './toml-hints.ts'
import { hideSecretsIn, isAtOrUnder, resolveSecrets, type SecretSources } from './secrets.ts'
import type { Config, ListenerConfig, ListenerTls, RouteConfig } from './types.ts'

/**
 * Parses, validates and normalizes a policy file; every problem in it is reported in one ConfigError.
 * `secrets` is where `${env:…}` and `${file:…}` references are looked up (none given: they are errors).
 * With a locked `base`, the file may not loosen what the base sets, and inherits it where silent.
 */
export function loadConfigText(text: string, source: string, secrets: SecretSources = {}, base?: LockedBase): Config {
  const document = parseDocument(text, source)
  const resolved = resolveSecrets(document, source, secrets, formatPath)
  const unresolved = resolved.problems.map((problem) => problem.path)
  const result = v.safeParse(configFileSchema, document, { abortEarly: false, message: issueMessage })
  const checked = [...(result.issues ?? []).map(issueToProblem), ...crossReferenceProblems(document)]
  // A string whose reference failed still holds it: what the schema says about that string is noise.
  const meaningful = checked.filter((problem) => !unresolved.some((path) => isAtOrUnder(problem.path, path)))
  const problems = [...resolved.problems, ...hideSecretsIn(meaningful, resolved.uses)].map((problem) => withTomlHint(problem, text))
  if (!result.success || problems.length > 0) throw new ConfigError(source, problems)
  const config = normalize(result.output, source)
  if (resolved.uses.paths.length > 0) config.secrets = resolved.uses
  if (base !== undefined) {
    const loosened = applyBase(config, result.output, base)
    if (loosened.length > 0) throw new ConfigError(source, loosened)
  }
  return config
}

export function parseDocument(text: string, source: string): unknown {
  try {
    return parseToml(text)
  } catch (error) {
    throw new ConfigError(source, [withTomlHint(syntaxProblem(error), text)])
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

export function issueToProblem(issue: v.BaseIssue<unknown>): ConfigProblem {
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
 * reported even when other keys of the file are broken. Each policy checks its own references.
 */
function crossReferenceProblems(document: unknown): ConfigProblem[] {
  if (!isTable(document)) return []
  const listeners = isTable(document.listeners) ? document.listeners : {}
  const upstreams = isTable(document.upstreams) ? document.upstreams : {}
  const routes = Array.isArray(document.routes) ? document.routes : []
  const file: FileFacts = { document, upstreamNames: Object.keys(upstreams) }
  return [
    ...addressConflicts(document.gateway, listeners),
    ...policyReferenceProblems(document.defaults, 'defaults', file),
    ...routeProblems(routes, Object.keys(listeners), file),
    ...auditRouteProblems(document.audit, routes),
  ]
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
  if (isTable(gateway)) claim(gateway.probes, 'gateway.probes')
  for (const [name, listener] of Object.entries(listeners)) {
    if (isTable(listener)) claim(listener.listen, `${formatPath([{ key: 'listeners' }, { key: name }])}.listen`)
  }
  return problems
}

function routeProblems(routes: unknown[], listenerNames: string[], file: FileFacts): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  const namedAt = new Map<string, number>()
  for (const [index, route] of routes.entries()) {
    if (!isTable(route)) continue
    const at = `routes[${index}]`
    const missingListener = missingReference('listener', route.listener, listenerNames)
    if (missingListener) problems.push({ path: `${at}.listener`, message: missingListener })
    const missingUpstream = missingReference('upstream', route.upstream, [...file.upstreamNames])
    if (missingUpstream) problems.push({ path: `${at}.upstream`, message: missingUpstream })
    problems.push(...policyReferenceProblems(route, at, file))
    const name = route.name ?? defaultRouteName(index)
    if (typeof name !== 'string') continue
    const first = namedAt.get(name)
    if (first === undefined) namedAt.set(name, index)
    else problems.push({ path: `${at}.name`, message: `duplicate route name ${JSON.stringify(name)} (also routes[${first}])` })
  }
  return problems
}

function defaultRouteName(index: number): string {
  return `route-${index}`
}

function listenerTls(tls: { cert: string; key: string; client_ca?: string | undefined; allowed_sans?: string[] | undefined }, source: string): ListenerTls {
  const resolved: ListenerTls = { cert: besidePolicyFile(tls.cert, source), key: besidePolicyFile(tls.key, source) }
  if (tls.client_ca !== undefined) resolved.clientCa = besidePolicyFile(tls.client_ca, source)
  if (tls.allowed_sans !== undefined) resolved.allowedSans = tls.allowed_sans
  return resolved
}

/** Local files of [control]: the caches, and a base that is not a URL. */
function resolveControlFiles(control: ControlConfig, besideFile: (path: string) => string): ControlConfig {
  const resolved = { ...control }
  if (control.cache !== undefined) resolved.cache = besideFile(control.cache)
  if (control.baseCache !== undefined) resolved.baseCache = besideFile(control.baseCache)
  if (control.base !== undefined && !isUrl(control.base)) resolved.base = besideFile(control.base)
  return resolved
}

function normalize(file: ConfigFile, source: string): Config {
  const besideFile = (path: string) => besidePolicyFile(path, source)
  const defaults = resolvePolicyFiles(pickPolicies(file.defaults), besideFile)
  const inherited = { ...builtInPolicies(), ...defaults }
  const listeners: Record<string, ListenerConfig> = {}
  for (const [name, { listen, direction, tls, protocols, header_timeout }] of Object.entries(file.listeners)) {
    listeners[name] = { name, host: listen.host, port: listen.port, direction }
    if (header_timeout !== undefined) listeners[name].headerTimeoutMs = header_timeout
    if (tls !== undefined) listeners[name].tls = listenerTls(tls, source)
    if (protocols !== undefined && (protocols.length > 1 || protocols[0] !== 'http1')) listeners[name].protocols = protocols
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
      upstream: route.upstream ?? (route.split as Array<{ upstream: string }>)[0]!.upstream,
      policies: { ...inherited, ...resolvePolicyFiles(pickPolicies(route), besideFile) },
    }
    if (normalized.policies.split !== undefined) normalized.split = normalized.policies.split
    if (route.host !== undefined) normalized.host = route.host
    if (route.methods !== undefined) normalized.methods = route.methods
    if (route.headers !== undefined) normalized.headers = route.headers
    if (route.strip_prefix !== undefined) normalized.stripPrefix = route.strip_prefix
    if (route.rewrite !== undefined) normalized.rewrite = route.rewrite
    return normalized
  })
  const { service, admin, shutdown_grace, header_timeout, trusted_proxies, admin_token_env, probes } = file.gateway
  const gateway: Config['gateway'] = { service, admin, shutdownGraceMs: shutdown_grace }
  if (header_timeout !== undefined) gateway.headerTimeoutMs = header_timeout
  if (trusted_proxies.length > 0) gateway.trustedProxies = trusted_proxies
  if (admin_token_env !== undefined) gateway.adminTokenEnv = admin_token_env
  if (probes !== undefined) gateway.probes = probes
  const config: Config = { source, gateway, listeners, upstreams, defaults, routes }
  if (file.control !== undefined) config.control = resolveControlFiles(file.control, besideFile)
  if (file.observability !== undefined) {
    config.observability = normalizeObservability(file.observability, service, (path) => besidePolicyFile(path, source))
  }
  if (file.audit !== undefined) config.audit = file.audit
  if (file.redis !== undefined) config.redis = file.redis
  return config
}
