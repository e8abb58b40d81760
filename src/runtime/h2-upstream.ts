import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2'
import { declaredLength, isBodyless } from '../core/upstream-answer.ts'
import { UpstreamError, type UpstreamFailure } from '../core/upstream-error.ts'
import type { UpstreamAnswer, UpstreamClient, UpstreamRequest, UpstreamTls } from '../core/host.ts'
import { oncePerUpstreamTls, readUpstreamTls, type UpstreamTlsTexts } from './upstream-tls.ts'
import { nodeReadable } from './readable-stream.ts'
import { lazyBuiltin } from './builtin.ts'
import { concatBytes } from '../core/body.ts'
import { webHeaders, type FieldsToHeaders } from './h2-fields.ts'
import type { Abortable } from '../core/cancel.ts'

const http2 = lazyBuiltin(() => process.getBuiltinModule('node:http2'))

/**
 * The HTTP/2 upstream client (protocol = "h2c" | "h2"), on node:http2, which Node, Bun and Deno all
 * carry. Calls to one origin share a pooled connection: a second opens beside it only when the
 * first carries as many streams as the server allows (its SETTINGS_MAX_CONCURRENT_STREAMS, at most
 * MAX_STREAMS_PER_CONNECTION). A connection that says GOAWAY, fails or closes leaves the pool at
 * once: its calls in flight finish on it, and the next call opens a new one. An idle connection
 * closes after IDLE_CLOSE_MS.
 */

/** Streams one connection carries at once when the server allows more (or has not said yet); gRPC servers commonly allow 100. */
export const MAX_STREAMS_PER_CONNECTION = 100

/** A connection without streams this long is closed (as undici's keep-alive default does for HTTP/1.1, longer). */
export const IDLE_CLOSE_MS = 60_000

/** Hop-by-hop and HTTP/1.1-only fields, which HTTP/2 forbids (RFC 9113 §8.2.2); the forwarder drops most already. */
const NOT_SENT = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host', 'te', 'http2-settings'])

class Connection {
  readonly session: ClientHttp2Session
  active = 0
  usable = true
  /** Set once the server's SETTINGS arrived: until then its stream limit is unknown. */
  settled = false
  /** Resolves once connected and the server's SETTINGS are in; rejects when the connect fails. */
  readonly ready: Promise<void>

  constructor(origin: string, tls: UpstreamTlsTexts, connectTimeoutMs: number, leave: (connection: Connection) => void) {
    const { ca, cert, key, serverName } = tls
    const session = http2().connect(origin, { ca, cert, key, ...(serverName === undefined ? {} : { servername: serverName }) })
    this.session = session
    const drop = () => {
      if (!this.usable) return
      this.usable = false
      leave(this)
    }
    session.on('goaway', drop)
    session.on('close', drop)
    session.on('error', drop)
    // A pooled connection alone never keeps the process alive (the listeners do while it serves).
    session.unref()
    session.setTimeout(IDLE_CLOSE_MS, () => {
      if (this.active === 0) session.close()
    })
    this.ready = new Promise<void>((resolve, reject) => {
      const timer = connectTimeoutMs > 0 ? setTimeout(() => fail(new UpstreamError('connect-timeout', `no connection within ${connectTimeoutMs}ms`)), connectTimeoutMs) : undefined
      const fail = (error: unknown) => {
        clearTimeout(timer)
        drop()
        session.destroy()
        reject(error instanceof UpstreamError ? error : new UpstreamError('connect-failure', String((error as Error)?.message ?? error), { cause: error }))
      }
      // Calls wait for the server's SETTINGS: streams beyond its limit sent before them would be refused.
      session.once('remoteSettings', () => {
        clearTimeout(timer)
        session.off('error', fail)
        this.settled = true
        resolve()
      })
      session.once('error', fail)
    })
    // A failed connect is reported to the call that waits; nobody else must see it as unhandled.
    this.ready.catch(() => {})
  }

  /** Its TLS files were rotated: no new calls; it closes once the calls on it are done. */
  retire(): void {
    this.usable = false
    this.session.close()
  }

  get limit(): number {
    const allowed = this.session.remoteSettings?.maxConcurrentStreams
    return allowed === undefined ? MAX_STREAMS_PER_CONNECTION : Math.min(allowed, MAX_STREAMS_PER_CONNECTION)
  }
}


/** A connection with a free stream for one call (counted in `active`), opening one when all are full. */
function acquire(origin: string, tls: UpstreamTls | undefined, connectTimeoutMs: number, signal: Abortable): Connection | Promise<Connection> {
  // Most calls find a connected one with room: taken at once, without awaiting its (settled) readiness.
  const pools = tls === undefined ? PLAIN_POOLS : poolsFor(tls).byOrigin
  const pool = pools.get(origin)
  if (pool !== undefined) {
    for (const connection of pool) {
      if (connection.usable && connection.settled && connection.active < connection.limit) {
        connection.active++
        return connection
      }
    }
  }
  return opened(origin, tls, connectTimeoutMs, signal)
}

async function opened(origin: string, tls: UpstreamTls | undefined, connectTimeoutMs: number, signal: Abortable): Promise<Connection> {
  for (;;) {
    const connection = candidate(origin, tls, connectTimeoutMs)
    await connection.ready
    if (signal.aborted) throw signal.reason
    if (connection.usable && connection.active < connection.limit) {
      connection.active++
      return connection
    }
  }
}

/** Connections by origin, one set for each upstream TLS setting; a rotation of its files starts a new set. */
const PLAIN_POOLS = new Map<string, Connection[]>()
const poolsFor = oncePerUpstreamTls(
  (tls) => ({ texts: readUpstreamTls(tls), byOrigin: new Map<string, Connection[]>() }),
  (old) => {
    for (const pool of old.byOrigin.values()) for (const connection of pool) connection.retire()
  },
)

/** A usable connection that may have room (one still connecting may), else a new one. */
function candidate(origin: string, tls: UpstreamTls | undefined, connectTimeoutMs: number): Connection {
  const pools = tls === undefined ? { texts: {}, byOrigin: PLAIN_POOLS } : poolsFor(tls)
  let pool = pools.byOrigin.get(origin)
  if (pool === undefined) pools.byOrigin.set(origin, (pool = []))
  for (const connection of pool) if (connection.usable && (!connection.settled || connection.active < connection.limit)) return connection
  const connection = new Connection(origin, pools.texts, connectTimeoutMs, (gone) => {
    const at = pool.indexOf(gone)
    if (at !== -1) pool.splice(at, 1)
  })
  pool.push(connection)
  return connection
}

function requestHeaders(r: UpstreamRequest, path: string): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = { ':method': r.method, ':path': path }
  for (const [name, value] of r.headers) if (!NOT_SENT.has(name)) headers[name] = value
  // The one TE value HTTP/2 allows: the answer may end with trailers, as gRPC's do (servers like grpc-go insist on it).
  headers.te = 'trailers'
  return headers
}

/** Splits "http://host:port/base/path?q" into origin and the rest. */
function splitOrigin(url: string): [origin: string, path: string] {
  const slash = url.indexOf('/', url.indexOf('//') + 2)
  return slash === -1 ? [url, '/'] : [url.slice(0, slash), url.slice(slash)]
}

/** A stream refused before the server processed it (RFC 9113 §8.7) is safe to try elsewhere, like a failed connect. */
function streamFailure(stream: ClientHttp2Stream): UpstreamFailure {
  return stream.rstCode === http2().constants.NGHTTP2_REFUSED_STREAM ? 'connect-failure' : 'reset'
}

/** The HTTP/2 upstream client, its answers' headers and trailers made by `toHeaders`. */
export function http2Client(toHeaders: FieldsToHeaders = webHeaders): UpstreamClient {
  return (r) => call(r, toHeaders)
}

export const http2Upstream: UpstreamClient = http2Client()

function call(r: UpstreamRequest, answerHeaders: FieldsToHeaders): Promise<UpstreamAnswer> {
  if (r.signal.aborted) return Promise.reject(r.signal.reason)
  const [origin, path] = splitOrigin(r.url)
  let connection: Connection | Promise<Connection>
  try {
    connection = acquire(origin, r.tls, r.connectTimeoutMs, r.signal)
  } catch (error) {
    return Promise.reject(error)
  }
  if (connection instanceof Connection) return exchange(connection, r, path, answerHeaders)
  return connection.then(
    (ready) => exchange(ready, r, path, answerHeaders),
    (error) => {
      throw r.signal.aborted ? r.signal.reason : error
    },
  )
}

/** One call on a connection whose stream it holds (counted in `active` until the stream closes). */
function exchange(connection: Connection, r: UpstreamRequest, path: string, answerHeaders: FieldsToHeaders): Promise<UpstreamAnswer> {
  let released = false
  const release = () => {
    if (released) return
    released = true
    connection.active--
  }
  const body = r.body
  let stream: ClientHttp2Stream
  try {
    stream = connection.session.request(requestHeaders(r, path), { endStream: body === null })
  } catch (error) {
    release()
    return Promise.reject(new UpstreamError('connect-failure', String((error as Error)?.message ?? error), { cause: error }))
  }
  if (body instanceof Uint8Array) stream.end(body)
  else if (body !== null) void sendBody(body, stream)
  return new Promise<UpstreamAnswer>((resolve, reject) => {
    const { signal } = r
    let answered = false
    let trailers: Headers | undefined
    let settleTrailers: ((trailers: Headers) => void) | undefined
    const onAbort = () => stream.close(http2().constants.NGHTTP2_CANCEL)
    signal.addEventListener('abort', onAbort, { once: true })
    stream.on('trailers', (fields: IncomingHttpHeaders) => {
      trailers = answerHeaders(fields)
    })
    const failBeforeAnswer = (error: unknown) => {
      if (answered) return
      answered = true
      if (signal.aborted) return reject(signal.reason)
      reject(new UpstreamError(streamFailure(stream), String((error as Error)?.message ?? 'the stream was reset'), { cause: error }))
    }
    stream.once('error', failBeforeAnswer)
    stream.once('close', () => {
      release()
      signal.removeEventListener('abort', onAbort)
      if (!answered) failBeforeAnswer(new Error(`the stream closed before an answer (code ${stream.rstCode})`))
      settleTrailers?.(trailers ?? new Headers())
    })
    const answer = (status: number, headers: Headers, body: UpstreamAnswer['body'], ended: boolean) => {
      answered = true
      stream.off('error', failBeforeAnswer)
      // After the answer, a failure shows on its body stream (nodeReadable); this keeps it from being unhandled.
      stream.on('error', () => {})
      // A body read whole has had its trailers already; a streamed one has them once the stream closes.
      const settled = ended ? Promise.resolve(trailers ?? new Headers()) : new Promise<Headers>((settle) => (settleTrailers = settle))
      resolve({ status, statusText: '', headers, body, trailers: settled })
    }
    const streamed = (first?: Uint8Array[]) => nodeReadable(stream, () => stream.close(http2().constants.NGHTTP2_CANCEL), first)
    stream.once('response', (fields: IncomingHttpHeaders, flags: number) => {
      const status = Number(fields[':status'])
      if (!(status >= 200 && status <= 599)) {
        answered = true
        stream.close(http2().constants.NGHTTP2_PROTOCOL_ERROR)
        return reject(new UpstreamError('protocol-error', `upstream answered with status ${fields[':status']}`))
      }
      const headers = answerHeaders(fields)
      // Headers that end the stream (gRPC's trailers-only answers) have no body: they must reach the client the same way.
      if (isBodyless(r.method, status) || (flags & http2().constants.NGHTTP2_FLAG_END_STREAM) !== 0) {
        stream.resume()
        return answer(status, headers, null, false)
      }
      const limit = r.bufferUpTo
      const declared = limit === undefined ? Number.POSITIVE_INFINITY : declaredLength(headers)
      if (limit === undefined || (declared > limit && declared !== Number.POSITIVE_INFINITY)) return answer(status, headers, streamed(), false)
      readWhole(stream, limit, declared !== Number.POSITIVE_INFINITY, {
        whole: (bytes) => answer(status, headers, bytes, true),
        streamed: (first) => answer(status, headers, streamed(first), false),
      })
    })
  })
}

/**
 * Reads a small answer body whole, as the HTTP/1.1 clients do for one with a declared length up to
 * `limit`: the caller then hands over bytes, not a web stream. HTTP/2 servers often declare no length
 * (node:http2's own does not); such a body is still taken whole when it has ended by the time the
 * event loop turns once after its headers (it came in the same reads), else it streams from what has
 * come so far, so a long-lived stream (gRPC's server streaming) is never held back. A failure before
 * the end shows as the stream's close (failBeforeAnswer).
 */
function readWhole(
  stream: ClientHttp2Stream,
  limit: number,
  declared: boolean,
  to: { whole: (bytes: Uint8Array<ArrayBuffer>) => void; streamed: (first: Uint8Array[]) => void },
): void {
  const chunks: Uint8Array[] = []
  let size = 0
  let done = false
  const onData = (chunk: Buffer) => {
    if (chunk.byteLength === 0) return
    chunks.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength))
    size += chunk.byteLength
    if (size > limit) toStream()
  }
  const onEnd = () => {
    if (done) return
    done = true
    stream.off('data', onData)
    to.whole(concatBytes(chunks, size))
  }
  const toStream = () => {
    if (done) return
    done = true
    stream.off('data', onData)
    stream.off('end', onEnd)
    to.streamed(chunks)
  }
  stream.on('data', onData)
  stream.once('end', onEnd)
  if (!declared) setImmediate(toStream)
}

/** Sends a streamed request body with backpressure; a failed body cancels the stream. */
async function sendBody(body: ReadableStream<Uint8Array>, stream: ClientHttp2Stream): Promise<void> {
  const reader = body.getReader()
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      if (stream.destroyed) return void reader.cancel().catch(() => {})
      if (!stream.write(value)) await new Promise<void>((resolve) => {
        const go = () => {
          stream.off('drain', go)
          stream.off('close', go)
          resolve()
        }
        stream.on('drain', go)
        stream.on('close', go)
      })
    }
    if (!stream.destroyed) stream.end()
  } catch {
    stream.close(http2().constants.NGHTTP2_CANCEL)
  }
}

/** The runtime's HTTP/1.1 client, with calls to h2c and h2 upstreams sent over HTTP/2 instead. */
export function withHttp2(http1: UpstreamClient, toHeaders?: FieldsToHeaders): UpstreamClient {
  const h2 = http2Client(toHeaders)
  return (r) => (r.protocol === undefined ? http1(r) : h2(r))
}
