import { formatIp, parseIp, type CidrSet } from '../core/cidr.ts'

/**
 * The client's address as Pillion believes it. X-Forwarded-For is believed only when the peer that
 * connected is one of `trusted` (the gateway's trusted_proxies): then the rightmost address in it
 * that is not itself a trusted proxy is the client (Envoy's xff_num_trusted_hops, Traefik's
 * ipStrategy.excludedIPs). Entries to the left of that one were written by whoever sent the
 * request and are never believed. An IPv4-mapped peer (::ffff:10.0.0.1) is reported as its IPv4
 * address, so limits and logs key one client the same way on every listener.
 */
export function resolveClientAddress(peer: string, forwardedFor: string | null, trusted: CidrSet | undefined): string {
  const peerText = peer.startsWith('::ffff:') ? unmapped(peer) : peer
  if (trusted === undefined || forwardedFor === null) return peerText
  const peerBytes = parseIp(peer)
  if (peerBytes === undefined || !trusted.has(peerBytes)) return peerText
  let nearest = peerText
  const hops = forwardedFor.split(',')
  for (let i = hops.length - 1; i >= 0; i--) {
    const bytes = parseIp(withoutPort(hops[i]!.trim()))
    // A hop our trusted proxy wrote but we cannot read: believe no further than the proxy.
    if (bytes === undefined) return nearest
    nearest = formatIp(bytes)
    if (!trusted.has(bytes)) return nearest
  }
  // Every hop is a trusted proxy: the leftmost is as close to the client as we can see.
  return nearest
}

function unmapped(address: string): string {
  const bytes = parseIp(address)
  return bytes === undefined ? address : formatIp(bytes)
}

/** "1.2.3.4:5678" and "[2001:db8::1]:443" (some proxies add the port) → the address alone. */
function withoutPort(hop: string): string {
  if (hop.startsWith('[')) {
    const end = hop.indexOf(']')
    return end === -1 ? hop : hop.slice(1, end)
  }
  const colon = hop.indexOf(':')
  return colon !== -1 && colon === hop.lastIndexOf(':') ? hop.slice(0, colon) : hop
}
