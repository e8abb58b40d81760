import { expectedGot } from '../core/config-error.ts'
import type { Conversion } from '../core/units.ts'

/** Endpoint URLs as the policy file and discovered lists write them; one rule for both. */

export const ENDPOINT_EXAMPLE = 'an http:// or https:// URL like "http://127.0.0.1:3000"'

/** Origin plus optional base path, without trailing slash, so `url + path` is the request URL. */
export function normalizeEndpointUrl(text: string): Conversion<string> {
  const url = /^https?:\/\//i.test(text) && URL.canParse(text) ? new URL(text) : undefined
  if (url === undefined || url.hostname === '') return { problem: expectedGot(ENDPOINT_EXAMPLE, text) }
  // The URL itself is not echoed: it holds a secret.
  if (url.username !== '' || url.password !== '') return { problem: 'expected an endpoint URL without user name or password' }
  if (/[?#]/.test(text)) return { problem: expectedGot('an endpoint URL without query or fragment', text) }
  return { value: `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}` }
}

/**
 * "http://10.0.0.7:8080", "http://[fd00::7]:8080" (an IPv6 address needs brackets in a URL), written
 * as normalizeEndpointUrl would, so a resolved address and a listed one compare equal.
 */
export function addressUrl(scheme: string, address: string, port: number): string {
  const host = address.includes(':') ? `[${address}]` : address
  const url = new URL(`${scheme}://${host}:${port}`)
  return `${url.protocol}//${url.host}`
}
