/**
 * What GET /config shows: the config with every secret it might hold blanked out. The policy file
 * keeps secrets in environment variables (secret_env, admin_token_env) and in `${env:…}`/`${file:…}`
 * references, whose values redactConfig blanks; beyond those this catches what slips in anyway: passwords in URLs (a Redis URL), token or secret keys, private JWK members,
 * credentials in header matches.
 */

import type { Config } from '../config/types.ts'

export const REDACTED = '[redacted]'

/** Keys whose string values are secrets; names of environment variables and files are not. */
const SECRET_KEY = /secret|password|passwd|token|credential|private|authorization|cookie|api_?key$/i
const NOT_SECRET = /(?:env|file|header|headers|path|_?names?)$/i
/** JWK members only private and secret keys have (RFC 7518 §6). */
const PRIVATE_JWK = new Set(['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'])
const SECRET_HEADER = /^(?:authorization|proxy-authorization|cookie|x-api-key|api-key)$/i
const SECRET_PARAM = /^(?:.*token|.*secret|password|passwd|key|api_?key|sig|signature)$/i

/**
 * The config as GET /config shows it: secret-looking keys blanked (redact), and every value that came
 * from `${env:…}`/`${file:…}` blanked wherever normalization put it, whatever the key is called. Values
 * are matched rather than key paths because the normalized config is not shaped like the file (a
 * route's policies merge [defaults]; an endpoint becomes { url, weight }).
 */
export function redactConfig(config: Config): unknown {
  const { secrets, ...shown } = config
  const hidden = secretPatterns(secrets?.values ?? [])
  return redact(shown, '', hidden)
}

/** Case-insensitive (a host name may come out lower-cased), and without a trailing slash (endpoints lose it). */
function secretPatterns(values: readonly string[]): RegExp[] {
  return values
    .map((value) => value.replace(/\/+$/, ''))
    .filter((value) => value !== '')
    .sort((a, b) => b.length - a.length)
    .map((value) => new RegExp(value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'gi'))
}

export function redact(value: unknown, key = '', secrets: readonly RegExp[] = []): unknown {
  if (typeof value === 'string') return redactString(hideSecrets(value, secrets), key)
  if (Array.isArray(value)) {
    // A header match, [name, value]: hide the value of credential headers.
    if (value.length === 2 && typeof value[0] === 'string' && typeof value[1] === 'string' && SECRET_HEADER.test(value[0])) {
      return [value[0], REDACTED]
    }
    return value.map((item) => redact(item, key, secrets))
  }
  if (typeof value !== 'object' || value === null) return value
  const isJwk = typeof (value as { kty?: unknown }).kty === 'string'
  const out: Record<string, unknown> = {}
  for (const [name, item] of Object.entries(value)) {
    if (isJwk && PRIVATE_JWK.has(name)) out[name] = REDACTED
    else out[name] = redact(item, name, secrets)
  }
  return out
}

function hideSecrets(text: string, secrets: readonly RegExp[]): string {
  let hidden = text
  for (const secret of secrets) hidden = hidden.replace(secret, REDACTED)
  return hidden
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
