import { describeValue } from '../core/config-error.ts'
import type { Conversion } from '../core/units.ts'
import { normalizeEndpointUrl } from './endpoint-url.ts'
import type { EndpointConfig } from './config.ts'

const FILE_SHAPE = 'a JSON array of endpoint URLs or of { "url": ..., "weight": ... } objects'

/**
 * The endpoints file of `discovery = { file = ... }`: ["http://a:1", ...] or
 * [{ "url": "http://a:1", "weight": 3 }, ...]. As strict as the policy file (unknown keys, duplicate
 * URLs and an empty list are problems), since a problem only keeps the last good list in force.
 */
export function parseEndpointFile(text: string): Conversion<EndpointConfig[]> {
  let document: unknown
  try {
    document = JSON.parse(text)
  } catch (error) {
    return { problem: `not JSON: ${(error as Error).message}` }
  }
  if (!Array.isArray(document)) return { problem: expectedGot(FILE_SHAPE, document) }
  if (document.length === 0) return { problem: 'expected at least one endpoint, got none' }
  const endpoints: EndpointConfig[] = []
  const seen = new Set<string>()
  for (const [index, item] of document.entries()) {
    const entry = endpointEntry(item)
    if (entry.problem !== undefined) return { problem: `[${index}]${entry.problem}` }
    if (seen.has(entry.value.url)) return { problem: `[${index}]: ${describeValue(entry.value.url)} is listed twice` }
    seen.add(entry.value.url)
    endpoints.push(entry.value)
  }
  return { value: endpoints }
}

/** Like the policy file's messages, in JSON's words. */
function expectedGot(expected: string, found: unknown): string {
  const shown = found === null ? 'null' : typeof found === 'object' && !Array.isArray(found) ? 'an object' : describeValue(found)
  return `expected ${expected}, got ${shown}`
}

/** Problems start with the key path below the entry (".weight") or ":" for the entry itself. */
function endpointEntry(item: unknown): Conversion<EndpointConfig> {
  if (typeof item === 'string') {
    const url = normalizeEndpointUrl(item)
    return url.problem !== undefined ? { problem: `: ${url.problem}` } : { value: { url: url.value, weight: 1 } }
  }
  if (typeof item !== 'object' || item === null || Array.isArray(item)) {
    return { problem: `: ${expectedGot('an endpoint URL or { "url": ..., "weight": ... }', item)}` }
  }
  const { url, weight = 1, ...rest } = item as Record<string, unknown>
  const unknown = Object.keys(rest)[0]
  if (unknown !== undefined) return { problem: `: unknown key ${describeValue(unknown)} (allowed: url, weight)` }
  if (typeof url !== 'string') return { problem: url === undefined ? '.url: required key missing' : `.url: ${expectedGot('a string', url)}` }
  const normalized = normalizeEndpointUrl(url)
  if (normalized.problem !== undefined) return { problem: `.url: ${normalized.problem}` }
  if (typeof weight !== 'number' || !Number.isSafeInteger(weight) || weight <= 0) {
    return { problem: `.weight: ${expectedGot('a positive integer', weight)}` }
  }
  return { value: { url: normalized.value, weight } }
}
