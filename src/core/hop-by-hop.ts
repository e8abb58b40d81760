/** RFC 9110 §7.6.1 connection-specific headers, plus the non-standard ones proxies traditionally drop. */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
])

/** An HTTP token (RFC 9110 §5.6.2) in lower case: a header name as Headers keeps it. */
export const LOWER_TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/

/** "keep-alive" alone, as nearly every HTTP/1.1 message that has a Connection header says. */
const JUST_KEEP_ALIVE: readonly string[] = Object.freeze(['keep-alive'])

/** The header names a Connection value lists, lower-case: hop-by-hop for that one message (RFC 9110 §7.6.1). */
export function connectionNames(connection: string): readonly string[] {
  if (connection.length === 10 && connection.toLowerCase() === 'keep-alive') return JUST_KEEP_ALIVE
  const names: string[] = []
  for (const part of connection.split(',')) {
    const name = part.trim().toLowerCase()
    if (name !== '' && LOWER_TOKEN.test(name)) names.push(name)
  }
  return names
}
