import type { TLSSocket } from 'node:tls'
import type { PeerNamesCheck } from '../core/host.ts'

/**
 * A certificate's subject alternative names from node:tls's `subjectaltname` text, as "DNS:…" and
 * "URI:…" entries. Node joins them with ", " and JSON-quotes a value that holds a comma, a quote or
 * a control character (CVE-2021-44533), so a name cannot pose as two.
 */
export function subjectAltNames(text: string | undefined): string[] {
  if (text === undefined || text === '') return []
  const names: string[] = []
  let at = 0
  while (at < text.length) {
    const colon = text.indexOf(':', at)
    if (colon === -1) break
    const type = text.slice(at, colon)
    let value: string
    let end: number
    if (text[colon + 1] === '"') {
      end = closingQuote(text, colon + 2)
      if (end === -1) break
      try {
        value = JSON.parse(text.slice(colon + 1, end + 1)) as string
      } catch {
        break
      }
      end += 1
    } else {
      end = text.indexOf(', ', colon + 1)
      if (end === -1) end = text.length
      value = text.slice(colon + 1, end)
    }
    names.push(`${type}:${value}`)
    at = end + 2
  }
  return names
}

function closingQuote(text: string, from: number): number {
  for (let i = from; i < text.length; i++) {
    if (text[i] === '\\') i++
    else if (text[i] === '"') return i
  }
  return -1
}

/**
 * allowed_sans: a client whose verified certificate carries none of the allowed names is dropped
 * right after its handshake, before any request is read (as Envoy's SAN matchers fail the handshake).
 */
export function refuseUnlistedPeer(acceptsPeer: PeerNamesCheck): (socket: TLSSocket) => void {
  return (socket) => {
    if (!acceptsPeer(subjectAltNames(socket.getPeerCertificate().subjectaltname), socket.remoteAddress ?? '')) socket.destroy()
  }
}
