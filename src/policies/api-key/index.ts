import * as v from 'valibot'
import { describeValue, expectedGot } from '../../core/config-error.ts'
import { boolean, table, text } from '../../core/schema-kit.ts'
import { GatewayError } from '../../core/errors.ts'
import type { EventBus } from '../../core/events.ts'
import type { Exchange, Layer, Step } from '../../proxy/exchange.ts'
import type { PolicyHost, PolicyModule, RouteContext } from '../policy.ts'
import { apiKeyWeakerThan } from './strictness.ts'
import type { ApiKeyPolicy } from './types.ts'

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/i

function headerName(example: string) {
  return v.pipe(
    v.string((issue) => expectedGot(`a header name like "${example}"`, issue.input)),
    v.regex(TOKEN, (issue) => expectedGot(`a header name like "${example}"`, issue.input)),
    v.toLowerCase(),
  )
}

/** [routes.api_key]: a key in a request header, looked up by its SHA-256 in a watched JSON file. */
export const apiKeyPolicy: PolicyModule<ApiKeyPolicy, 'apiKey'> = {
  key: 'api_key',
  field: 'apiKey',
  schema: v.pipe(
    table({
      header: v.optional(headerName('x-api-key'), 'x-api-key'),
      keys_file: text(),
      consumer_header: v.optional(headerName('x-consumer'), 'x-consumer'),
      forward_key: v.optional(boolean(), false),
    }),
    v.forward(
      v.partialCheck(
        [['header'], ['consumer_header']],
        ({ header, consumer_header }) => header !== consumer_header,
        (issue) => `${describeValue(issue.input.consumer_header)} is also the key header`,
      ),
      ['consumer_header'],
    ),
    v.transform(
      (t): ApiKeyPolicy => ({ header: t.header, keysFile: t.keys_file, consumerHeader: t.consumer_header, forwardKey: t.forward_key }),
    ),
  ),
  builtInDefault: undefined,
  resolveFiles: (policy, resolve) => ({ ...policy, keysFile: resolve(policy.keysFile) }),
  weakerThan: apiKeyWeakerThan,
  layer: (policy, context) => apiKeyLayer(policy, context),
}

const SHA256_HEX = /^[0-9a-f]{64}$/

/** The file's text as a digest → consumer map, or why it is not one. */
export function parseKeysFile(text: string): Map<string, string> | { problem: string } {
  let document: unknown
  try {
    document = JSON.parse(text)
  } catch (error) {
    return { problem: `not JSON: ${(error as Error).message}` }
  }
  if (typeof document !== 'object' || document === null || Array.isArray(document)) {
    return { problem: 'expected a JSON object mapping the hex SHA-256 of each key to its consumer name' }
  }
  const consumers = new Map<string, string>()
  for (const [digest, consumer] of Object.entries(document)) {
    const hex = digest.toLowerCase()
    if (!SHA256_HEX.test(hex)) return { problem: `${JSON.stringify(digest)} is not a hex SHA-256 (64 hex digits)` }
    if (typeof consumer !== 'string' || !/^[\x21-\x7e][\x20-\x7e]*$/.test(consumer)) {
      return { problem: `the consumer for ${hex.slice(0, 8)}… must be a non-empty printable ASCII string` }
    }
    consumers.set(hex, consumer)
  }
  return consumers
}

const encoder = new TextEncoder()

/** How many valid keys a store remembers by their plain value (see ApiKeyStore.#known). */
const KNOWN_KEYS = 10_000

async function sha256Hex(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', encoder.encode(text)))
  let hex = ''
  for (const byte of digest) hex += byte.toString(16).padStart(2, '0')
  return hex
}

/**
 * One keys file, read at load and again whenever it changes. A file that cannot be read or parsed
 * keeps the last good keys (none before the first good read, so every key is refused: fail closed).
 */
export class ApiKeyStore {
  readonly file: string
  #consumers = new Map<string, string>()
  /**
   * Keys seen valid, by the key as presented, so a client that sends its key again costs a map lookup
   * rather than a SHA-256 (150 µs on Node's WebCrypto, 9 µs on Bun). Kong's key-auth caches by key
   * too, and the route's JWT cache does the same for tokens. Only valid keys enter, at most
   * KNOWN_KEYS of them, and the map is emptied whenever the file is read again.
   */
  readonly #known = new Map<string, string>()
  readonly #host: PolicyHost
  readonly #events: EventBus
  #loading: Promise<void>

  constructor(file: string, host: PolicyHost, events: EventBus) {
    this.file = file
    this.#host = host
    this.#events = events
    this.#loading = this.reload()
  }

  #unwatch: (() => void) | undefined

  /** Watches the file from when the store enters service... */
  start(): void {
    this.#unwatch ??= this.#host.watchFile(this.file, () => {
      this.#loading = this.reload()
    })
  }

  /** ...until no config uses it. */
  stop(): void {
    this.#unwatch?.()
    this.#unwatch = undefined
  }

  async reload(): Promise<void> {
    this.#known.clear()
    let parsed: Map<string, string> | { problem: string }
    try {
      parsed = parseKeysFile(await this.#host.readTextFile(this.file))
    } catch (error) {
      parsed = { problem: `cannot read it: ${(error as Error).message}` }
    }
    if (parsed instanceof Map) {
      this.#known.clear()
      this.#consumers = parsed
      this.#events.emit('api_keys_loaded', { file: this.file, keys: parsed.size })
    } else {
      this.#events.emit('api_keys_failed', { file: this.file, error: parsed.problem })
    }
  }

  /**
   * The consumer a key belongs to. Keys are compared by their SHA-256 digests, never as themselves:
   * what a lookup's timing can reveal is about a digest, which gives no way toward a key (the same
   * argument as Hono's timingSafeEqual, which hashes both sides before comparing).
   */
  async consumer(key: string): Promise<string | undefined> {
    const [digest] = await Promise.all([sha256Hex(key), this.#loading])
    const consumer = this.#consumers.get(digest)
    if (consumer !== undefined && this.#known.size < KNOWN_KEYS) this.#known.set(key, consumer)
    return consumer
  }

  /** The consumer of a key already seen valid since the file was last read; else ask consumer(). */
  known(key: string): string | undefined {
    return this.#known.get(key)
  }
}

/**
 * Looks the request's key up, records the consumer on the exchange (`${consumer}` in header rules)
 * and forwards its name upstream (x-consumer by default).
 * The consumer header is always set by us, so a client cannot send its own; the key itself is
 * removed unless forward_key is set.
 *
 * @example apiKeyLayer({ header: 'x-api-key', keysFile: 'consumers.json', consumerHeader: 'x-consumer', forwardKey: false }, context)
 */
export function apiKeyLayer(policy: ApiKeyPolicy, context: RouteContext): Layer {
  const { header, consumerHeader, forwardKey } = policy
  const store = context.gateway.keep(`api_keys:${policy.keysFile}`, policy.keysFile, () => new ApiKeyStore(policy.keysFile, context.gateway.host, context.events))
  const route = context.route.name
  const events = context.events
  const challenge = { 'www-authenticate': `ApiKey header="${header}"` }
  const reject = (reason: 'missing' | 'unknown'): never => {
    events.emit('auth_reject', { route, policy: 'api_key', reason })
    const error = new GatewayError('unauthorized', reason === 'missing' ? `an API key is required in ${header}` : 'the API key is not valid')
    error.headers = challenge
    throw error
  }
  return (next: Step) =>
    async function apiKey(exchange: Exchange): Promise<Response> {
      const key = exchange.request.headers.get(header)
      if (key === null || key === '') return reject('missing')
      const consumer = store.known(key) ?? (await store.consumer(key))
      if (consumer === undefined) return reject('unknown')
      exchange.consumer = consumer
      exchange.setUpstreamHeader(consumerHeader, consumer)
      if (!forwardKey) exchange.setUpstreamHeader(header, null)
      return next(exchange)
    }
}

declare module '../../core/events.ts' {
  interface GatewayEventMap {
    api_keys_loaded: { file: string; keys: number }
    api_keys_failed: { file: string; error: string }
  }
}

export type { ApiKeyPolicy }
