import * as v from 'valibot'
import { describeValue, expectedGot } from '../../core/config-error.ts'
import { arrayOf, integer, name, table } from '../../core/schema-kit.ts'
import { convertedString, type Conversion } from '../../core/units.ts'
import type { Exchange, Layer } from '../../proxy/exchange.ts'
import type { UpstreamRuntime } from '../../upstream/upstream.ts'
import type { PolicyModule, RouteContext } from '../policy.ts'
import { isTable, upstreamReference } from '../shared/references.ts'

/** `[[routes.split]]` entries: which upstream, and its share of the route's traffic. */
export const splitSchema = v.pipe(
  arrayOf(table({ upstream: name(), weight: integer(0) })),
  v.minLength(1, 'expected at least one [[routes.split]] entry'),
  v.check(
    (backends) => backends.some((backend) => backend.weight > 0),
    'expected at least one weight above 0 (all are 0, so no upstream would ever be chosen)',
  ),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return
    const seen = new Set<string>()
    for (const [index, { upstream }] of dataset.value.entries()) {
      if (seen.has(upstream)) {
        addIssue({
          message: `upstream ${describeValue(upstream)} is listed twice; give it one entry with the sum of the weights`,
          path: [{ type: 'array', origin: 'value', input: dataset.value, key: index, value: dataset.value[index] }],
        })
      }
      seen.add(upstream)
    }
  }),
)

const STICKY_EXAMPLE = '"header:NAME", "cookie:NAME" or "client_ip"'
const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/i

function toStickyKey(text: string): Conversion<StickyKey> {
  if (text === 'client_ip') return { value: { kind: 'client_ip' } }
  const [, kind, keyName] = /^(header|cookie):(.+)$/.exec(text) ?? []
  if (kind === undefined || keyName === undefined || !TOKEN.test(keyName)) return { problem: expectedGot(STICKY_EXAMPLE, text) }
  // Header names are case-insensitive; cookie names are not (RFC 6265 §5.3 compares them exactly).
  return { value: kind === 'header' ? { kind: 'header', name: keyName.toLowerCase() } : { kind: 'cookie', name: keyName } }
}

/** Route-level `sticky`: what a split hashes so that one user always lands on the same upstream. */
export const stickySchema = convertedString(STICKY_EXAMPLE, toStickyKey)

/**
 * FNV-1a over the key's UTF-16 code units, then murmur3's finalizer: FNV alone leaves short, similar
 * keys ("user-1", "user-2") close together in the high bits the bucket is read from.
 */
export function stickyHash(key: string): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193)
  }
  hash ^= hash >>> 16
  hash = Math.imul(hash, 0x85ebca6b)
  hash ^= hash >>> 13
  hash = Math.imul(hash, 0xc2b2ae35)
  hash ^= hash >>> 16
  return hash >>> 0
}

/** The value of one cookie in a Cookie header, or undefined. */
export function cookieValue(header: string | null, cookieName: string): string | undefined {
  if (header === null) return undefined
  const prefix = `${cookieName}=`
  for (const part of header.split(';')) {
    const pair = part.trim()
    if (pair.startsWith(prefix)) return pair.slice(prefix.length)
  }
  return undefined
}

/** The sticky key of one request; undefined when the request does not carry it. */
function stickyKeyReader(sticky: StickyKey | undefined): ((exchange: Exchange) => string | undefined) | undefined {
  if (sticky === undefined) return undefined
  switch (sticky.kind) {
    case 'header': {
      const headerName = sticky.name
      // An empty value is no key: hashing "" would put every such request on one version.
      return (exchange) => exchange.request.headers.get(headerName) || undefined
    }
    case 'cookie': {
      const cookieName = sticky.name
      return (exchange) => cookieValue(exchange.request.headers.get('cookie'), cookieName) || undefined
    }
    case 'client_ip':
      return (exchange) => exchange.client.remoteAddress || undefined
  }
}

/**
 * Picks the upstream for each request and leaves it in `exchange.target`, which the per-upstream
 * part of the chain (breaker, fault, forward) is selected by.
 *
 * Each upstream owns a slice of [0, 1) as wide as its share of the total weight, in file order. A
 * request lands at a point in that range: a hash of its sticky key when the route sets `sticky` and
 * the request carries the key, else a random one. So one key always lands on one upstream, and
 * moving weight from the first entry to the last (a canary ramp 90/10 → 80/20) only moves keys
 * toward the last: nobody already on the canary is sent back.
 *
 * @example splitLayer({ backends: [{ upstream: 'v1', weight: 90 }, { upstream: 'v2', weight: 10 }] }, context)
 */
export function splitLayer(policy: SplitPolicy, context: RouteContext): Layer {
  const total = policy.backends.reduce((sum, backend) => sum + backend.weight, 0)
  const upstreams: UpstreamRuntime[] = []
  const bounds: number[] = []
  let cumulative = 0
  for (const backend of policy.backends) {
    if (backend.weight === 0) continue
    const upstream = context.upstreams.get(backend.upstream)
    // load.ts checks the names; this catches any path around that check at load, not per request.
    if (upstream === undefined) throw new Error(`split upstream ${JSON.stringify(backend.upstream)} is not defined`)
    cumulative += backend.weight
    upstreams.push(upstream)
    bounds.push(cumulative / total)
  }
  // Float sums may end a hair below 1; the last slice must catch every point.
  bounds[bounds.length - 1] = Number.POSITIVE_INFINITY
  const readKey = stickyKeyReader(policy.sticky)
  const random = context.random

  const pick = (point: number): UpstreamRuntime => {
    let index = 0
    while (point >= bounds[index]!) index++
    return upstreams[index]!
  }

  return (next) =>
    function split(exchange: Exchange): Promise<Response> {
      const key = readKey?.(exchange)
      exchange.target = pick(key === undefined ? random() : stickyHash(key) / 0x1_0000_0000)
      return next(exchange)
    }
}

/**
 * `[[routes.split]]` (and the route's `sticky`): weighted version routing. A key of the route
 * alone: the route's upstream or its split says where it goes, so [defaults] cannot set it.
 */
export const splitPolicy: PolicyModule<SplitPolicy, 'split', SplitPolicy['backends']> = {
  key: 'split',
  field: 'split',
  schema: splitSchema,
  builtInDefault: undefined,
  routeOnly: true,
  extraKeys: { sticky: stickySchema },
  pick: (table) => {
    const backends = table.split as SplitPolicy['backends'] | undefined
    if (backends === undefined) return undefined
    const sticky = table.sticky as StickyKey | undefined
    return sticky === undefined ? { backends } : { backends, sticky }
  },
  references: (value, at, file) =>
    Array.isArray(value) ? value.flatMap((entry: unknown, index) => (isTable(entry) ? upstreamReference(entry.upstream, `${at}[${index}].upstream`, file) : [])) : [],
  targets: (policy) => policy.backends.map((backend) => backend.upstream),
  layer: (policy, context) => splitLayer(policy, context),
}

/** What a sticky split hashes: a request header, a cookie, or the client's address. */
export type StickyKey = { kind: 'header'; name: string } | { kind: 'cookie'; name: string } | { kind: 'client_ip' }

/** Weighted version routing: each request goes to one of these upstreams. */
export interface SplitPolicy {
  /** In file order; whole-number weights, at least one above zero. */
  backends: Array<{ upstream: string; weight: number }>
  sticky?: StickyKey
}
