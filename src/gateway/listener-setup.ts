import type { Config, ListenerConfig } from '../config/types.ts'
import type { ListenerSecurity } from '../listener/request-handler.ts'
import { toCidrSet } from '../policies/ip/index.ts'
import { caseGuard } from '../listener/route-case.ts'
import type { ListenerTls } from '../config/types.ts'
import type { ListenerProtocol, Runtime, ServeOptions } from '../core/host.ts'
import { peerNamesCheck } from '../listener/client-names.ts'
import { unsupportedOnRuntime } from './runtime-support.ts'
import { isLoopback } from '../core/address.ts'
import { tlsFileProblems } from './tls-files.ts'

/** What one listener checks before routing, prepared once per config load. */
export function listenerSecurity(config: Config, listener: string): ListenerSecurity {
  const security: ListenerSecurity = {}
  const trusted = config.gateway.trustedProxies
  if (trusted !== undefined && trusted.length > 0) security.trustedProxies = toCidrSet(trusted)
  const guard = caseGuard(config.routes.filter((route) => route.listener === listener))
  if (guard !== undefined) security.caseGuard = guard
  return security
}

/** How a listener's server is set up beyond its address: TLS files and the header deadline. */
export interface Serving {
  tls?: ListenerTls
  protocols?: ListenerProtocol[]
  headersTimeoutMs?: number
  /** The deadline must hold even where it costs a front: see ServeOptions.headersTimeoutRequired. */
  headersTimeoutRequired?: true
}

/**
 * The header deadline when no key sets it: NGINX's client_header_timeout and Node's headersTimeout
 * (Envoy's request_headers_timeout is off unless set).
 */
const DEFAULT_HEADER_TIMEOUT_MS = 60_000

/**
 * The header deadline is the listener's header_timeout, else [gateway] header_timeout, else 60 s;
 * the shortest limits.client_timeout among the listener's routes shortens it (a slow client is cut
 * before routing, so any route's limit protects the whole listener).
 *
 * Node keeps it for free, and Bun's server mostly does (runtime/bun-timers.ts). Deno, and Bun where
 * its server cannot, keep it through a front that relays every byte (connection-front.ts, ~25 µs per
 * request on the binary), so it is required only where it protects something: a listener other
 * hosts can reach, or one whose deadline the policy asked for. A loopback-only listener (the
 * service's own egress) is reached by processes of this host alone.
 */
export function listenerServing(config: Config, listener: ListenerConfig): Serving {
  const serving: Serving = {}
  if (listener.tls !== undefined) serving.tls = listener.tls
  if (listener.protocols !== undefined) serving.protocols = listener.protocols
  const headerTimeout = listener.headerTimeoutMs ?? config.gateway.headerTimeoutMs
  if (headerTimeout === 0) {
    serving.headersTimeoutMs = 0
    return serving
  }
  let deadline = headerTimeout ?? DEFAULT_HEADER_TIMEOUT_MS
  let asked = headerTimeout !== undefined
  for (const route of config.routes) {
    const timeout = route.listener === listener.name ? route.policies.limits?.clientTimeoutMs : undefined
    if (timeout === undefined || timeout <= 0) continue
    deadline = Math.min(deadline, timeout)
    asked = true
  }
  serving.headersTimeoutMs = deadline
  if (asked || !isLoopback(listener.host)) serving.headersTimeoutRequired = true
  return serving
}

/** The PEM texts of a listener's TLS files, or an error naming the file that cannot be read; and its SAN check. */
export async function readTls(
  tls: ListenerTls,
  readTextFile: (path: string) => Promise<string>,
  refused?: (names: readonly string[], remoteAddress: string) => void,
): Promise<NonNullable<ServeOptions['tls']>> {
  const read = async (path: string, key: string) => {
    try {
      return await readTextFile(path)
    } catch (error) {
      throw new Error(`cannot read tls.${key} ${path}: ${(error as Error).message}`)
    }
  }
  const [cert, key] = await Promise.all([read(tls.cert, 'cert'), read(tls.key, 'key')])
  if (tls.clientCa === undefined) return { cert, key }
  const clientCa = await read(tls.clientCa, 'client_ca')
  return tls.allowedSans === undefined ? { cert, key, clientCa } : { cert, key, clientCa, acceptsPeer: peerNamesCheck(tls.allowedSans, refused) }
}

/**
 * What `pillion run` refuses before a config goes into service, at start and on reload alike (and
 * `pillion check` reports): keys this runtime cannot honour, and TLS files that cannot be used.
 */
export async function servingProblems(config: Config, runtime: Pick<Runtime, 'gaps' | 'readTextFile' | 'pem'>): Promise<string[]> {
  return [...unsupportedOnRuntime(config, runtime.gaps), ...(await tlsFileProblems(config, runtime))]
}

export async function refuseUnservable(config: Config, runtime: Pick<Runtime, 'gaps' | 'readTextFile' | 'pem'>): Promise<void> {
  const problems = await servingProblems(config, runtime)
  if (problems.length > 0) throw new Error(problems.join('; '))
}
