import * as v from 'valibot'
import { expectedGot } from '../../core/config-error.ts'
import { arrayOf, table } from '../../core/schema-kit.ts'
import { duration, size } from '../../core/units.ts'
import { GatewayError } from '../../core/errors.ts'
import type { EventBus } from '../../core/events.ts'
import type { Exchange, Layer, Step } from '../../proxy/exchange.ts'
import type { PolicyModule, RouteContext } from '../policy.ts'
import { limitsWeakerThan } from './strictness.ts'
import type { LimitsPolicy } from './types.ts'

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/i

/** NGINX client_max_body_size. */
const DEFAULT_MAX_BODY = '1mb'
/**
 * Node (maxHeaderSize), Bun and Deno all refuse a header section over about 16 KiB with 431 before
 * we see it, so that is the default; the policy can tighten it, not loosen it (Envoy allows 60 KiB).
 */
const DEFAULT_MAX_HEADER_BYTES = '16kb'
/** Apache's LimitRequestLine (8190) and NGINX's large_client_header_buffers (8k). */
const DEFAULT_MAX_URL_LENGTH = '8kb'
/** NGINX client_header_timeout and client_body_timeout. */
const DEFAULT_CLIENT_TIMEOUT = '60s'

function methodList() {
  const method = v.pipe(
    v.string((issue) => expectedGot('an HTTP method like "GET"', issue.input)),
    v.regex(TOKEN, (issue) => expectedGot('an HTTP method like "GET"', issue.input)),
    v.toUpperCase(),
  )
  return v.pipe(arrayOf(method), v.minLength(1, 'expected at least one method (leave the key out to allow any)'))
}

/** [routes.limits]: request size, method and pace limits; `limits = {}` turns them all on with defaults. */
export const limitsPolicy: PolicyModule<LimitsPolicy, 'limits'> = {
  key: 'limits',
  field: 'limits',
  schema: v.pipe(
    table({
      max_body: v.optional(size(), DEFAULT_MAX_BODY),
      max_header_bytes: v.optional(size(), DEFAULT_MAX_HEADER_BYTES),
      max_url_length: v.optional(size(), DEFAULT_MAX_URL_LENGTH),
      methods: v.optional(methodList()),
      client_timeout: v.optional(duration(), DEFAULT_CLIENT_TIMEOUT),
    }),
    v.transform((t): LimitsPolicy => {
      const policy: LimitsPolicy = {
        // The defaults went through size() too, so they are numbers.
        maxBodyBytes: t.max_body as number,
        maxHeaderBytes: t.max_header_bytes as number,
        maxUrlLength: t.max_url_length as number,
        clientTimeoutMs: t.client_timeout,
      }
      if (t.methods !== undefined) policy.methods = [...new Set(t.methods)]
      return policy
    }),
  ),
  builtInDefault: undefined,
  weakerThan: limitsWeakerThan,
  layer: (policy, context) => limitsLayer(policy, context),
}

/** Bytes of the header section as sent on the wire: "name: value\r\n" for each (values joined if repeated). */
export function headerBytes(headers: Headers): number {
  let total = 0
  for (const [name, value] of headers) total += name.length + value.length + 4
  return total
}

/** Express's method-override, Rails and Google APIs read these: the method the service will act on. */
const METHOD_OVERRIDES = ['x-http-method-override', 'x-http-method', 'x-method-override']

/** The request's method, or a method-override header's, when it is not allowed; undefined when all are. */
function disallowedMethod(request: Request, methods: ReadonlySet<string>): string | undefined {
  if (!methods.has(request.method)) return request.method
  for (const name of METHOD_OVERRIDES) {
    const override = request.headers.get(name)
    if (override !== null && !methods.has(override.trim().toUpperCase())) return `${override.trim().toUpperCase()} (by ${name})`
  }
  return undefined
}

/** The request target's length: path and query, as the runtime hands them over. */
function targetLength(url: string): number {
  const start = url.indexOf('/', url.indexOf('//') + 2)
  return start === -1 ? 1 : url.length - start
}

/**
 * Checks method, URL length and header size before anything else runs, then counts the request
 * body as it streams to the upstream. A Content-Length over max_body is refused before a byte is
 * read; a body without one (chunked), or one that lies, is cut at max_body + 1 bytes: the call is
 * aborted with 413 body_too_large (or, if the upstream already answered, its response is cut). A
 * body still arriving after client_timeout is cut the same way with 408 request_timeout; the
 * deadline ends once the upstream has answered. Hono's bodyLimit is not used: it buffers a chunked
 * body whole to count it, which would end streaming.
 *
 * @example limitsLayer({ maxBodyBytes: 1 << 20, maxHeaderBytes: 60 << 10, maxUrlLength: 8192, clientTimeoutMs: 60_000 }, context)
 */
export function limitsLayer(policy: LimitsPolicy, context: RouteContext): Layer {
  const { maxBodyBytes, maxHeaderBytes, maxUrlLength, clientTimeoutMs } = policy
  const methods = policy.methods === undefined ? undefined : new Set(policy.methods)
  const allow = policy.methods?.join(', ')
  const route = context.route.name
  const events = context.events
  const reject = (limit: 'headers' | 'url' | 'method' | 'body', error: GatewayError): Promise<never> => {
    events.emit('limit_reject', { route, limit })
    return Promise.reject(error)
  }
  const tooLarge = `the request body is larger than ${maxBodyBytes} bytes`
  return (next: Step) =>
    async function limits(exchange: Exchange): Promise<Response> {
      const request = exchange.request
      const method = methods === undefined ? undefined : disallowedMethod(request, methods)
      if (method !== undefined) {
        const error = new GatewayError('method_not_allowed', `${method} is not allowed on this route`)
        error.headers = { allow: allow! }
        return reject('method', error)
      }
      if (targetLength(request.url) > maxUrlLength) {
        return reject('url', new GatewayError('uri_too_long', `the request target is longer than ${maxUrlLength} bytes`))
      }
      if (headerBytes(request.headers) > maxHeaderBytes) {
        return reject('headers', new GatewayError('header_too_large', `the request headers are larger than ${maxHeaderBytes} bytes`))
      }
      const source = exchange.body
      if (!(source instanceof ReadableStream)) return next(exchange)
      const declared = request.headers.get('content-length')
      if (declared !== null && Number(declared) > maxBodyBytes) return reject('body', new GatewayError('body_too_large', tooLarge))
      const watch = new BodyWatch(exchange, events, route, maxBodyBytes, tooLarge, clientTimeoutMs)
      exchange.resumedBody = watch.wrap(source)
      try {
        return await next(exchange)
      } finally {
        watch.stopDeadline()
      }
    }
}

/** Counts one request body through and runs its read deadline. */
class BodyWatch {
  readonly #exchange: Exchange
  readonly #events: EventBus
  readonly #route: string
  readonly #maxBytes: number
  readonly #tooLarge: string
  #timer: ReturnType<typeof setTimeout> | undefined

  constructor(exchange: Exchange, events: EventBus, route: string, maxBytes: number, tooLarge: string, timeoutMs: number) {
    this.#exchange = exchange
    this.#events = events
    this.#route = route
    this.#maxBytes = maxBytes
    this.#tooLarge = tooLarge
    if (timeoutMs > 0) this.#timer = setTimeout(this.#timeUp, timeoutMs, timeoutMs)
  }

  readonly #timeUp = (timeoutMs: number): void => {
    this.#timer = undefined
    this.#events.emit('limit_reject', { route: this.#route, limit: 'client_timeout' })
    this.#abort(new GatewayError('request_timeout', `the request body did not arrive within client_timeout ${timeoutMs}ms`))
  }

  stopDeadline(): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
  }

  #abort(error: GatewayError): void {
    if (!this.#exchange.signal.aborted) this.#exchange.controller.abort(error)
  }

  wrap(source: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
    const reader = source.getReader()
    let total = 0
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          let chunk: ReadableStreamReadResult<Uint8Array>
          try {
            chunk = await reader.read()
          } catch (error) {
            this.stopDeadline()
            controller.error(error)
            return
          }
          if (chunk.done) {
            this.stopDeadline()
            controller.close()
            return
          }
          total += chunk.value.byteLength
          if (total > this.#maxBytes) {
            this.stopDeadline()
            this.#events.emit('limit_reject', { route: this.#route, limit: 'body' })
            const error = new GatewayError('body_too_large', this.#tooLarge)
            this.#abort(error)
            controller.error(error)
            reader.cancel(error).catch(() => {})
            return
          }
          controller.enqueue(chunk.value)
        },
        cancel: (reason) => {
          this.stopDeadline()
          return reader.cancel(reason)
        },
      },
      { highWaterMark: 0 },
    )
  }
}

declare module '../../core/events.ts' {
  interface GatewayEventMap {
    limit_reject: { route: string; limit: 'body' | 'headers' | 'url' | 'method' | 'client_timeout' }
  }
}

export type { LimitsPolicy }
