import { expectedGot } from '../core/config-error.ts'
import type { PeerNamesCheck } from '../core/host.ts'
import type { Conversion } from '../core/units.ts'

/**
 * `allowed_sans` of a listener's tls: which client certificates may connect, by their subject
 * alternative names. An entry with "://" is a URI SAN (SPIFFE IDs: "spiffe://cluster.local/ns/x/sa/y"),
 * matched exactly or, ending in "/*", by the path before it; any other is a DNS SAN, matched exactly
 * or, starting with "*.", as one label under the rest (as certificates' own wildcards match).
 */

export const ALLOWED_SAN_EXAMPLE = 'a SAN like "spiffe://cluster.local/ns/shop/sa/checkout", "spiffe://cluster.local/ns/shop/*", "checkout.internal" or "*.shop.internal"'

const DNS_LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?'
const DNS_NAME = new RegExp(`^(?:\\*\\.)?${DNS_LABEL}(?:\\.${DNS_LABEL})*$`, 'i')
const URI = /^[a-z][a-z0-9+.-]*:\/\/[^\s*]+(?:\/\*)?$/i

/** One allow-list entry checked and normalized: DNS names compare case-insensitively, URIs exactly. */
export function toAllowedSan(text: string): Conversion<string> {
  if (text.includes('://')) {
    if (!URI.test(text) || (text.endsWith('*') && !text.endsWith('/*'))) return { problem: expectedGot(ALLOWED_SAN_EXAMPLE, text) }
    // The scheme is case-insensitive in URIs; SPIFFE asks for lower case, so compare it lower-cased.
    const scheme = text.slice(0, text.indexOf('://')).toLowerCase()
    return { value: `URI:${scheme}${text.slice(text.indexOf('://'))}` }
  }
  return DNS_NAME.test(text) ? { value: `DNS:${text.toLowerCase()}` } : { problem: expectedGot(ALLOWED_SAN_EXAMPLE, text) }
}

/**
 * The check a listener's server runs on each verified client certificate. `allowed` holds entries
 * as toAllowedSan returns them; `names` the certificate's SANs as "DNS:…" and "URI:…".
 */
export function peerNamesCheck(allowed: readonly string[], refused: (names: readonly string[], remoteAddress: string) => void = () => {}): PeerNamesCheck {
  const exact = new Set<string>()
  const dnsSuffixes: string[] = []
  const uriPrefixes: string[] = []
  for (const entry of allowed) {
    if (entry.startsWith('DNS:*.')) dnsSuffixes.push(entry.slice('DNS:*'.length))
    else if (entry.startsWith('URI:') && entry.endsWith('/*')) uriPrefixes.push(entry.slice(0, -1))
    else exact.add(entry)
  }
  const matches = (name: string): boolean => {
    if (name.startsWith('DNS:')) {
      const dns = `DNS:${name.slice(4).toLowerCase()}`
      if (exact.has(dns)) return true
      const firstDot = dns.indexOf('.')
      return firstDot > 4 && dnsSuffixes.includes(dns.slice(firstDot))
    }
    if (!name.startsWith('URI:')) return false
    const uri = lowerScheme(name)
    return exact.has(uri) || uriPrefixes.some((prefix) => uri.startsWith(prefix) && uri.length > prefix.length)
  }
  return (names, remoteAddress) => {
    if (names.some(matches)) return true
    refused(names, remoteAddress)
    return false
  }
}

declare module '../core/events.ts' {
  interface GatewayEventMap {
    /** A client certificate that client_ca verified carried none of the listener's allowed_sans. */
    client_certificate_refused: { listener: string; remoteAddress: string; names: readonly string[] }
  }
}

function lowerScheme(name: string): string {
  const end = name.indexOf('://')
  return end === -1 ? name : `URI:${name.slice(4, end).toLowerCase()}${name.slice(end)}`
}
