import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2'
import type { Server as TcpServer, Socket } from 'node:net'
import type { ClientInfo, Handler, ServeOptions, Server } from '../core/host.ts'
import { ResponseClient } from './response-client.ts'
import { trailersOf } from '../core/trailers.ts'
import { bodyBytesOf } from '../core/body.ts'
import { nodeReadable } from './readable-stream.ts'
import { refuseUnlistedPeer } from './peer-certificate.ts'
import { lazyBuiltin } from './builtin.ts'
import { webHeaders, type FieldsToHeaders } from './h2-fields.ts'

const http = lazyBuiltin(() => process.getBuiltinModule('node:http'))
const http2 = lazyBuiltin(() => process.getBuiltinModule('node:http2'))
const net = lazyBuiltin(() => process.getBuiltinModule('node:net'))

/**
 * A listener that speaks HTTP/2 (h2c with prior knowledge, h2 by ALPN) and HTTP/1.1 beside it when
 * listed, on node:http2, which Node, Bun and Deno all carry with trailers both ways (docs/runtimes.md).
 * Bun.serve speaks no HTTP/2 at all and Deno.serve sends no trailers, so every runtime uses this one
 * for listeners with h2c or h2; HTTP/1.1-only listeners keep the runtime's own server.
 */

type AnyRequest = IncomingMessage | Http2ServerRequest
type AnyResponse = ServerResponse | Http2ServerResponse

/** The client connection preface of RFC 9113 §3.4 begins so; an HTTP/1.1 request line cannot. */
const PREFACE_START = 'PRI '

/** HTTP/2 forbids connection-specific header fields (RFC 9113 §8.2.2); Node throws on them. */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade'])

function secureContextOptions({ cert, key, clientCa }: NonNullable<ServeOptions['tls']>) {
  return { cert, key, ...(clientCa === undefined ? {} : { ca: clientCa, requestCert: true, rejectUnauthorized: true }) }
}

/** `toHeaders`: the runtime's own Headers kind for requests (Node's NodeHeaders); Headers as they are otherwise. */
export async function serveHttp2(handler: Handler, options: ServeOptions, runtime: string, toHeaders?: FieldsToHeaders): Promise<Server> {
  if (options.reusePort === true) {
    // Node's workers share the primary's socket through cluster and never ask for SO_REUSEPORT.
    throw new Error(`listeners with h2c or h2 cannot share their port across --workers on ${runtime} (node:net has no SO_REUSEPORT there): run one worker, or run under Node`)
  }
  const protocols = options.protocols ?? []
  const http1 = protocols.includes('http1')
  const onRequest = (req: AnyRequest, res: AnyResponse) => void answer(handler, req, res, options.tls === undefined ? 'http' : 'https', toHeaders)
  const http1Options = { requestTimeout: 0, keepAliveTimeout: 5_000, ...(options.headersTimeoutMs === undefined ? {} : { headersTimeout: options.headersTimeoutMs }) }
  let listening: TcpServer
  let updateTls: Server['updateTls'] = async () => {}
  const closers: Array<() => void> = []
  if (options.tls !== undefined) {
    const { acceptsPeer } = options.tls
    const server = http2().createSecureServer({ ...secureContextOptions(options.tls), allowHTTP1: http1 }, onRequest)
    if (acceptsPeer !== undefined) server.prependListener('secureConnection', refuseUnlistedPeer(acceptsPeer))
    // Rotation: new handshakes get the new texts, open connections keep theirs.
    updateTls = async (tls) => server.setSecureContext(secureContextOptions(tls))
    listening = server as unknown as TcpServer
  } else if (!http1) {
    listening = http2().createServer(onRequest) as unknown as TcpServer
  } else {
    // h2c and HTTP/1.1 on one port: the first bytes tell them apart, and go back for the chosen server to read.
    const h2c = http2().createServer(onRequest)
    const h1 = http().createServer(http1Options, onRequest)
    listening = net().createServer((socket: Socket) => {
      socket.once('readable', () => {
        const first = socket.read() as Buffer | null
        if (first === null) return void socket.destroy()
        socket.unshift(first)
        const server = first.toString('latin1', 0, PREFACE_START.length) === PREFACE_START ? h2c : h1
        server.emit('connection', socket)
      })
    })
    closers.push(() => h1.closeIdleConnections())
  }
  await new Promise<void>((resolve, reject) => {
    listening.once('error', reject)
    listening.listen(options.port, options.host, () => resolve())
  })
  const address = listening.address()
  return {
    host: options.host,
    port: typeof address === 'object' && address !== null ? address.port : options.port,
    updateTls: (tls) => updateTls(tls),
    close: () =>
      new Promise<void>((done) => {
        listening.close(() => done())
        for (const close of closers) close()
      }),
    closeWebSockets: () => {},
  }
}

/**
 * The client of one HTTP/2 request: its going away is the stream's 'aborted' (a reset before the
 * answer ended). Bun's and Deno's compat responses report writableFinished once the stream closes,
 * reset or not, so the HTTP/1.1 test of it would miss a client that left.
 */
class StreamClient implements ClientInfo {
  readonly remoteAddress: string
  readonly #request: Http2ServerRequest

  constructor(request: Http2ServerRequest) {
    this.remoteAddress = request.socket?.remoteAddress ?? ''
    this.#request = request
  }

  watchGone(listener: { handleEvent(): void }): () => void {
    const request = this.#request
    const onAborted = () => listener.handleEvent()
    request.once('aborted', onAborted)
    return () => request.off('aborted', onAborted)
  }
}

async function answer(handler: Handler, req: AnyRequest, res: AnyResponse, scheme: string, toHeaders: FieldsToHeaders | undefined): Promise<void> {
  const h2 = req.httpVersionMajor === 2
  let response: Response
  try {
    response = await handler(toRequest(req, scheme, toHeaders), h2 ? new StreamClient(req as Http2ServerRequest) : new ResponseClient(req, res))
  } catch {
    response = new Response(null, { status: 500 })
  }
  try {
    await send(response, res, h2)
  } catch {
    // The client went away or the body failed mid-way: the stream is reset, the connection lives on.
    if (h2) (res as Http2ServerResponse).stream.close(0x2)
    else res.destroy()
  }
}

/**
 * The request for the handler. A runtime that brings its own Headers kind (Node: `toHeaders`) has
 * them set on the Request as they are, as its HTTP/1.1 listener does, instead of copied into undici's.
 */
function toRequest(req: AnyRequest, scheme: string, toHeaders: FieldsToHeaders | undefined): Request {
  const raw = req.headers
  const headers = (toHeaders ?? webHeaders)(raw)
  const authority = (raw[':authority'] as string | undefined) ?? headers.get('host') ?? 'localhost'
  if (!headers.has('host')) headers.set('host', authority)
  const method = req.method ?? 'GET'
  const bodiless = method === 'GET' || method === 'HEAD'
  const init: RequestInit & { duplex?: 'half' } = toHeaders === undefined ? { method, headers } : { method }
  if (!bodiless) {
    init.body = nodeReadable(req)
    init.duplex = 'half'
  }
  const request = new Request(`${scheme}://${authority}${req.url}`, init)
  if (toHeaders !== undefined) Object.defineProperty(request, 'headers', { value: headers })
  return request
}

async function send(response: Response, res: AnyResponse, h2: boolean): Promise<void> {
  const headers: Record<string, string | string[]> = {}
  for (const [name, value] of response.headers) {
    if (name === 'set-cookie' || (h2 && CONNECTION_SPECIFIC.has(name))) continue
    headers[name] = value
  }
  const cookies = response.headers.getSetCookie()
  if (cookies.length > 0) headers['set-cookie'] = cookies
  const trailers = trailersOf(response)
  // Bytes in hand (the forwarder's small answers, read whole) are written as they are, without a web stream's reads.
  const bytes = bodyBytesOf(response)
  const body = bytes === undefined ? response.body : null
  if (h2 && bytes === undefined && body === null) {
    // Headers that end the stream: how gRPC's trailers-only answers must look (the compat end() sends an empty
    // frame after). Without a body there are no trailers to wait for: an upstream's trailers-only answer has none.
    ;(res as Http2ServerResponse).stream.respond({ ...headers, ':status': response.status }, { endStream: true })
    return
  }
  // The compat layer's writeHead and end would check and copy the headers again, and wait for trailers there are none
  // of. A HEAD request's stream has ended its writable side already: the compat layer knows how to answer that.
  const stream = h2 ? (res as Http2ServerResponse).stream : undefined
  if (stream !== undefined && bytes !== undefined && trailers === undefined && !stream.writableEnded) {
    stream.respond({ ...headers, ':status': response.status })
    stream.end(bytes)
    return
  }
  res.writeHead(response.status, headers)
  if (bytes !== undefined) {
    if (trailers !== undefined) res.addTrailers(await fieldsOf(trailers))
    res.end(bytes)
    return
  }
  if (body !== null) {
    const reader = body.getReader()
    try {
      for (;;) {
        const { done, value } = await reader.read()
        if (done) break
        if (!(res as ServerResponse).write(value)) await drained(res)
      }
    } catch (error) {
      // The client went away: the body's source (an upstream stream) is cancelled, not left running.
      reader.cancel(error).catch(() => {})
      throw error
    }
  }
  if (trailers !== undefined) res.addTrailers(await fieldsOf(trailers))
  res.end()
}

async function fieldsOf(trailers: Promise<Headers>): Promise<Record<string, string>> {
  const fields: Record<string, string> = {}
  for (const [name, value] of await trailers) fields[name] = value
  return fields
}

function drained(res: AnyResponse): Promise<void> {
  // A reset stream's write returns false, and its 'close' may have come already.
  if (res.destroyed || ('stream' in res && res.stream.destroyed)) return Promise.reject(new Error('the client went away'))
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      res.off('close', onClose)
      resolve()
    }
    const onClose = () => {
      res.off('drain', onDrain)
      reject(new Error('the client went away'))
    }
    res.once('drain', onDrain)
    res.once('close', onClose)
  })
}
