import type { Config } from '../config/types.ts'
import type { RuntimeGaps } from '../core/host.ts'

/**
 * Keys this runtime cannot honour, each refused by its key path with the runtime's own reason and
 * what works instead, so that neither `pillion check` nor `pillion run` lets a policy through that
 * would run with less than it says. The binary is Bun: what Bun refuses, the binary refuses.
 */
export function unsupportedOnRuntime(config: Config, gaps: RuntimeGaps): string[] {
  const problems: string[] = []
  for (const listener of Object.values(config.listeners)) {
    const where = `listeners.${listener.name}.tls`
    if (gaps.clientCa !== undefined && listener.tls?.clientCa !== undefined) problems.push(`${where}.client_ca: ${gaps.clientCa}`)
    if (gaps.allowedSans !== undefined && listener.tls?.allowedSans !== undefined) problems.push(`${where}.allowed_sans: ${gaps.allowedSans}`)
  }
  for (const upstream of Object.values(config.upstreams)) {
    if (gaps.upstreamServerName !== undefined && upstream.tls?.serverName !== undefined) {
      problems.push(`upstreams.${upstream.name}.server_name: ${gaps.upstreamServerName}`)
    }
  }
  return problems
}
