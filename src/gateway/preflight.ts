import type { Config } from '../config/types.ts'
import { adminToken } from '../admin/token.ts'
import { parseKeysFile } from '../policies/api-key/index.ts'
import { MIN_SECRET_BYTES } from '../policies/jwt/index.ts'
import { unusableInlineKeys } from '../policies/jwt/inline-keys.ts'
import { routeCovers } from '../listener/route-cover.ts'
import type { Runtime } from '../core/host.ts'
import { servingProblems } from './listener-setup.ts'

/** What the preflight reads: files, the environment and DNS, as `pillion run` would at start, on this runtime. */
export type PreflightHost = Pick<Runtime, 'gaps' | 'readTextFile' | 'env' | 'pem' | 'resolveDns'>

/**
 * What `pillion run` would refuse at start beyond the policy file itself, found without binding
 * anything: keys this runtime cannot honour, the admin token, TLS files that are missing, do not parse
 * or hold a key that is not the certificate's (listeners' and upstreams'), API-key
 * files that do not parse, HMAC secrets not in the environment, discovery files that cannot be read.
 * Every problem is listed, each naming its key and file.
 */
export async function preflight(config: Config, host: PreflightHost): Promise<string[]> {
  const problems: string[] = []
  const attempt = async (check: () => unknown): Promise<void> => {
    try {
      await check()
    } catch (error) {
      problems.push((error as Error).message)
    }
  }
  await attempt(() => adminToken(config.gateway.adminTokenEnv, host.env))
  problems.push(...(await servingProblems(config, host)))
  const seen = new Set<string>()
  for (const route of config.routes) {
    const { apiKey, jwt } = route.policies
    if (apiKey !== undefined && !seen.has(apiKey.keysFile)) {
      seen.add(apiKey.keysFile)
      await attempt(async () => {
        const parsed = parseKeysFile(await readFile(host, apiKey.keysFile, `routes.${route.name}.api_key.keys_file`))
        if ('problem' in parsed) throw new Error(`routes.${route.name}.api_key.keys_file ${apiKey.keysFile}: ${parsed.problem}`)
      })
    }
    if (jwt?.keys !== undefined) {
      for (const problem of await unusableInlineKeys(jwt)) problems.push(`routes.${route.name}.jwt.${problem}`)
    }
    if (jwt?.secretEnv !== undefined) {
      const bytes = new TextEncoder().encode(host.env(jwt.secretEnv) ?? '').length
      const where = `routes.${route.name}.jwt.secret_env`
      if (bytes === 0) problems.push(`${where}: environment variable ${jwt.secretEnv} is not set`)
      else if (bytes < MIN_SECRET_BYTES) problems.push(`${where}: the secret in ${jwt.secretEnv} is ${bytes} bytes; HMAC secrets need at least ${MIN_SECRET_BYTES}`)
    }
  }
  for (const upstream of Object.values(config.upstreams)) {
    const file = upstream.discovery !== undefined && 'file' in upstream.discovery ? upstream.discovery.file.path : undefined
    if (file !== undefined) await attempt(() => readFile(host, file, `upstreams.${upstream.name}.discovery.file`))
  }
  return problems
}

/**
 * What `pillion run` would start with but probably should not (`pillion check --strict` fails on
 * them): routes no request can reach because an earlier route of the same listener matches all they
 * would, and host names of endpoints and DNS discovery that do not resolve from here.
 */
export async function preflightWarnings(config: Config, host: Pick<PreflightHost, 'resolveDns'>): Promise<string[]> {
  const warnings: string[] = []
  for (const [index, route] of config.routes.entries()) {
    const cover = config.routes.slice(0, index).find((earlier) => earlier.listener === route.listener && routeCovers(earlier, route))
    if (cover !== undefined) {
      warnings.push(`routes[${index}] ("${route.name}") can never match: routes[${cover.index}] ("${cover.name}") comes first and matches every request it would`)
    }
  }
  const names = new Map<string, string>()
  for (const upstream of Object.values(config.upstreams)) {
    for (const [i, endpoint] of upstream.endpoints.entries()) {
      const name = new URL(endpoint.url).hostname
      if (!IP_LITERAL.test(name) && !names.has(name)) names.set(name, `upstreams.${upstream.name}.endpoints[${i}]`)
    }
    const dns = upstream.discovery !== undefined && 'dns' in upstream.discovery ? upstream.discovery.dns.host : undefined
    if (dns !== undefined && !IP_LITERAL.test(dns) && !names.has(dns)) names.set(dns, `upstreams.${upstream.name}.discovery.dns`)
  }
  const unresolved = await Promise.all(
    [...names].map(async ([name, key]) => {
      const addresses = await host.resolveDns(name).catch((error: Error) => error)
      if (addresses instanceof Error) return `${key}: the name ${JSON.stringify(name)} does not resolve here (${addresses.message})`
      return addresses.length === 0 ? `${key}: the name ${JSON.stringify(name)} resolves to no address here` : undefined
    }),
  )
  for (const warning of unresolved) if (warning !== undefined) warnings.push(warning)
  return warnings
}

/** An IPv4 address, or an IPv6 one as URL.hostname spells it (in brackets). */
const IP_LITERAL = /^(?:\d{1,3}(?:\.\d{1,3}){3}|\[[\dA-Fa-f:.]+\])$/

async function readFile(host: PreflightHost, path: string, key: string): Promise<string> {
  try {
    return await host.readTextFile(path)
  } catch (error) {
    throw new Error(`${key} ${path}: cannot read it: ${(error as Error).message}`)
  }
}
