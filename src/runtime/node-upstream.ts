import type { IncomingHttpHeaders } from 'node:http'
import type { Socket } from 'node:net'
import { Agent, buildConnector, errors, type Dispatcher } from 'undici'
import { declaredLength, isBodyless } from '../core/upstream-answer.ts'
import { UpstreamError, type UpstreamFailure } from '../core/upstream-error.ts'
import type { UpstreamAnswer, UpstreamClient, UpstreamRequest, UpstreamTls } from '../core/host.ts'
import { oncePerUpstreamTls, readUpstreamTls } from './upstream-tls.ts'
import { NodeHeaders } from './node-headers.ts'

/**
 * Node's upstream client, on undici's dispatcher rather than fetch or node:http: fetch decodes
 * content-encoding, rejects Expect/Connection and costs several times more CPU per request; node:http's
 * ClientRequest costs about three times what a dispatch does (runtime.md §2.3). Bodies stay Node
 * Buffers: a small one is handed over whole, a large one through a web stream with backpressure.
 */

/** One keep-alive agent (a pool per origin) per connect timeout, and per upstream TLS setting when there is one. */
const plainAgents = new Map<number, Agent>()
// A rotated file gets new pools; the old ones close once their calls and streams are done.
const tlsAgents = oncePerUpstreamTls(
  () => new Map<number, Agent>(),
  (old) => {
    for (const agent of old.values()) void agent.close().catch(() => {})
  },
)

export function agentFor(connectTimeoutMs: number, tls: UpstreamTls | undefined): Agent {
  const agents = tls === undefined ? plainAgents : tlsAgents(tls)
  let agent = agents.get(connectTimeoutMs)
  if (agent === undefined) {
    agent = new Agent({
      // Pillion's own timeouts (route, per try, body stall) govern a call; undici's would cut it at 300 s.
      headersTimeout: 0,
      bodyTimeout: 0,
      connect: connectWithin(connectTimeoutMs, tls === undefined ? {} : connectorTls(tls)),
    })
    agents.set(connectTimeoutMs, agent)
  }
  return agent
}

/** Node's tls.connect options: servername is both the SNI and the name the certificate must carry. */
function connectorTls(tls: UpstreamTls): buildConnector.BuildOptions {
  const { ca, cert, key, serverName } = readUpstreamTls(tls)
  return { ca, cert, key, ...(serverName === undefined ? {} : { servername: serverName }) }
}

/**
 * undici's connector with an exact connect timeout: its own runs on ~500 ms "fast timers", so a
 * 300 ms connect_timeout fired after about a second.
 */
function connectWithin(timeoutMs: number, tls: buildConnector.BuildOptions): buildConnector.connector {
  const connect = buildConnector({ ...tls, timeout: 0 })
  return (options, callback) => {
    let timer: ReturnType<typeof setTimeout> | undefined
    const socket = (connect as unknown as (o: buildConnector.Options, c: buildConnector.Callback) => Socket)(options, (...result) => {
      clearTimeout(timer)
      callback(...result)
    })
    if (timeoutMs > 0) {
      timer = setTimeout(() => socket.destroy(new errors.ConnectTimeoutError(`no connection within ${timeoutMs}ms`)), timeoutMs)
    }
    return socket
  }
}

const CONNECT_FAILURES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL'])

/** connected: whether the request had a socket (onRequestStart); anything before it is a connect failure (TLS included). */
export function failureOf(error: Error & { code?: string }, connected: boolean): UpstreamFailure {
  const code = error.code
  if (code === 'UND_ERR_CONNECT_TIMEOUT') return 'connect-timeout'
  if (!connected || (code !== undefined && CONNECT_FAILURES.has(code))) return 'connect-failure'
  // undici 7 leaves HTTPParserError's code unset; a stray 100 or 101 comes as "bad response"/"bad upgrade".
  if (error.name === 'HTTPParserError' || (code === 'UND_ERR_SOCKET' && error.message.startsWith('bad '))) return 'protocol-error'
  return 'reset'
}

/** What undici sends: a NodeHeaders' list as it is (the listener's and the forwarder's on Node), else the Headers iterated. */
function flatHeaders(headers: Headers): string[] {
  if (headers instanceof NodeHeaders) return headers.flat()
  const flat: string[] = []
  for (const [name, value] of headers) flat.push(name, value)
  return flat
}

export function answerHeaders(parsed: IncomingHttpHeaders): Headers {
  return NodeHeaders.fromParsed(parsed) as unknown as Headers
}

/** "http://host:port/base/path?q" → origin and the rest; endpoint URLs are normalized (endpoint-url.ts). */
export function splitOrigin(url: string): [origin: string, path: string] {
  const slash = url.indexOf('/', url.indexOf('//') + 2)
  return slash === -1 ? [url, '/'] : [url.slice(0, slash), url.slice(slash)]
}

/** One call's dispatch handler: resolves with the answer's head, and feeds or collects its body. */
class Call implements Dispatcher.DispatchHandler {
  readonly #request: UpstreamRequest
  readonly #resolve: (answer: UpstreamAnswer) => void
  readonly #reject: (error: unknown) => void
  #controller: Dispatcher.DispatchController | undefined
  #answer: UpstreamAnswer | undefined
  /** Set while a small body is collected whole. */
  #chunks: Buffer[] | undefined
  #size = 0
  /** Set while a large body streams. */
  #stream: ReadableStreamDefaultController<Uint8Array> | undefined
  #settled = false

  constructor(request: UpstreamRequest, resolve: (answer: UpstreamAnswer) => void, reject: (error: unknown) => void) {
    this.#request = request
    this.#resolve = resolve
    this.#reject = reject
    request.signal.addEventListener('abort', this)
  }

  /** The try's signal fired: an EventListener object, so a call allocates no closure for it. */
  handleEvent(): void {
    const reason = this.#request.signal.reason
    if (this.#controller !== undefined) return this.#controller.abort(reason)
    // Still connecting: settle now (onRequestStart aborts the dispatch when the socket comes).
    this.#done()
    if (!this.#settled) {
      this.#settled = true
      this.#reject(reason)
    }
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller
    if (this.#request.signal.aborted) controller.abort(this.#request.signal.reason)
  }

  onResponseStart(controller: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if (status < 200) return // informational (102, 103): the final answer follows; undici itself refuses a stray 100
    if (status > 599) return controller.abort(new UpstreamError('protocol-error', `upstream answered with status ${status}`))
    const answer: UpstreamAnswer = { status, statusText: statusMessage ?? '', headers: answerHeaders(headers), body: null }
    this.#answer = answer
    const request = this.#request
    if (isBodyless(request.method, status)) return this.#settle(answer)
    if (request.bufferUpTo !== undefined && declaredLength(answer.headers) <= request.bufferUpTo) {
      this.#chunks = []
      return
    }
    answer.body = new ReadableStream<Uint8Array>({
      start: (stream) => {
        this.#stream = stream
      },
      // Only when paused: pull also runs inside enqueue, and a resume there re-enters undici's parser.
      pull: () => {
        if (controller.paused) controller.resume()
      },
      cancel: () => controller.abort(new UpstreamError('reset', 'the response body was cancelled')),
    })
    this.#settle(answer)
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#chunks !== undefined) {
      this.#chunks.push(chunk)
      this.#size += chunk.byteLength
    } else if (this.#stream !== undefined && chunk.byteLength > 0) {
      // undici hands over an empty chunk on resume; pausing on it would loop for ever.
      this.#stream.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength))
      if ((this.#stream.desiredSize ?? 0) <= 0) controller.pause()
    }
  }

  onResponseEnd(): void {
    this.#done()
    const chunks = this.#chunks
    if (chunks !== undefined) {
      // Node's socket chunks are Buffers on a plain ArrayBuffer (never shared memory).
      this.#answer!.body = (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.#size)) as Uint8Array<ArrayBuffer>
      this.#settle(this.#answer!)
    } else if (this.#stream !== undefined) {
      this.#stream.close()
    }
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error & { code?: string }): void {
    this.#done()
    const signal = this.#request.signal
    const reason =
      signal.aborted ? signal.reason
      : error instanceof UpstreamError ? error
      : new UpstreamError(failureOf(error, this.#controller !== undefined), error.message, { cause: error })
    if (!this.#settled) {
      this.#settled = true
      this.#reject(reason)
    } else {
      this.#stream?.error(reason)
    }
  }

  #settle(answer: UpstreamAnswer): void {
    this.#settled = true
    this.#resolve(answer)
  }

  #done(): void {
    this.#request.signal.removeEventListener('abort', this)
  }
}

export const nodeUpstream: UpstreamClient = (r: UpstreamRequest) =>
  new Promise<UpstreamAnswer>((resolve, reject) => {
    if (r.signal.aborted) return reject(r.signal.reason)
    const [origin, path] = splitOrigin(r.url)
    const options: Dispatcher.DispatchOptions = {
      origin,
      path,
      method: r.method as Dispatcher.HttpMethod,
      headers: flatHeaders(r.headers),
      // A web stream is an async iterable: undici writes it with backpressure. Node 20 throws an
      // uncaught ERR_INVALID_STATE when a bare Readable.toWeb stream is cancelled mid-upload
      // (nodejs/node#54205); @hono/node-server's request bodies are wrapped, so they are safe.
      body: r.body as Dispatcher.DispatchOptions['body'],
    }
    agentFor(r.connectTimeoutMs, r.tls).dispatch(options, new Call(r, resolve, reject))
  })
