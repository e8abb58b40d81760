/** Addresses as the policy file writes them: "host:port", IPv6 in brackets. */

export const HOST_NAME = /^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$/
export const IPV6 = /^[0-9a-f:.]+$/i

export interface HostPort {
  host: string // without brackets for IPv6, e.g. "::1"
  port: number
}

/** "0.0.0.0:8080", "localhost:0", "[::1]:9901"; the IPv6 host comes back without brackets. */
export function parseHostPort(address: string): HostPort | undefined {
  const match = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d{1,5})$/.exec(address)
  if (!match) return undefined
  const [, ipv6, hostName, portText] = match
  const port = Number(portText)
  if (port > 65_535) return undefined
  if (ipv6 !== undefined) return IPV6.test(ipv6) && ipv6.includes(':') ? { host: ipv6, port } : undefined
  const host = hostName!.toLowerCase()
  return HOST_NAME.test(host) ? { host, port } : undefined
}

/** 127.0.0.0/8, ::1 and localhost: reachable from this host only. */
export function isLoopback(host: string): boolean {
  const lower = host.toLowerCase()
  return lower === 'localhost' || lower === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(lower) || lower === '::ffff:127.0.0.1'
}

export function formatAddress({ host, port }: HostPort): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}
