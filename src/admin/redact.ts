/**
 * What GET /config shows: the config with every secret it might hold blanked out. The policy file
 * keeps secrets in environment variables (secret_env, admin_token_env), so mostly this catches
 * what slips in anyway: passwords in URLs (a Redis URL), token or secret keys, private JWK members,
 * credentials in header matches.
 */

export const REDACTED = '[redacted]'

/** Keys whose string values are secrets; names of environment variables and files are not. */
const SECRET_KEY = /secret|password|passwd|token|credential|private|authorization|cookie|api_?key$/i
const NOT_SECRET = /(?:env|file|header|headers|path|_?names?)$/i
/** JWK members only private and secret keys have (RFC 7518 §6). */
const PRIVATE_JWK = new Set(['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'])
const SECRET_HEADER = /^(?:authorization|proxy-authorization|cookie|x-api-key|api-key)$/i
const SECRET_PARAM = /^(?:.*token|.*secret|password|passwd|key|api_?key|sig|signature)$/i

export function redact(value: unknown, key = ''): unknown {
  if (typeof value === 'string') return redactString(value, key)
  if (Array.isArray(value)) {
    // A header match, [name, value]: hide the value of credential headers.
    if (value.length === 2 && typeof value[0] === 'string' && typeof value[1] === 'string' && SECRET_HEADER.test(value[0])) {
      return [value[0], REDACTED]
    }
    return value.map((item) => redact(item, key))
  }
  if (typeof value !== 'object' || value === null) return value
  const isJwk = typeof (value as { kty?: unknown }).kty === 'string'
  const out: Record<string, unknown> = {}
  for (const [name, item] of Object.entries(value)) {
    if (isJwk && PRIVATE_JWK.has(name)) out[name] = REDACTED
    else out[name] = redact(item, name)
  }
  return out
}

function redactString(text: string, key: string): string {
  if (key !== '' && SECRET_KEY.test(key) && !NOT_SECRET.test(key)) return REDACTED
  if (!text.includes('://') || !URL.canParse(text)) return text
  const url = new URL(text)
  let changed = false
  if (url.password !== '') {
    url.password = 'redacted'
    changed = true
  }
  for (const name of [...url.searchParams.keys()]) {
    if (SECRET_PARAM.test(name)) {
      url.searchParams.set(name, 'redacted')
      changed = true
    }
  }
  return changed ? url.toString() : text
}
