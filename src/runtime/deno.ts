import { errorResponse } from '../core/errors.ts'
import { serveHttp2 } from './h2-server.ts'
import { withHttp2 } from './h2-upstream.ts'
import { h1Client, poolsPerUpstreamTls } from './h1-client.ts'
import { denoDial } from './deno-dial.ts'
import type { ClientInfo, Handler, Runtime, ServeOptions } from '../core/host.ts'
import { plainHttp, rebindingServer, type PlainServer } from './rebinding-server.ts'
import { connectionFront, type FrontedConnections } from './connection-front.ts'
import { denoPlainFront } from './deno-front.ts'
import { sessionOf } from '../core/websocket.ts'
import { debounce, resolvedTargetChange } from './watch.ts'
import { pemInspector } from './pem.ts'
import { createRedisStore } from './redis.ts'
import { denoWorkers } from './workers-deno.ts'
import { denoSpawn } from './spawn-deno.ts'
import { clientApiCloseCode, LiveBridges, type RelayMessage, type RelaySocket } from './ws-relay.ts'
import { webSocketClientConnector } from './ws-upstream.ts'
import { oncePerUpstreamTls, readUpstreamTls, upstreamTlsFilesChanged } from './upstream-tls.ts'

declare const Deno: {
  version: { deno: string }
  args: string[]
  env: { get(name: string): string | undefined }
  exit(code: number): never
  stdout: { writeSync(bytes: Uint8Array): number; write(bytes: Uint8Array): Promise<number> }
  open(path: string, options: { append: true; create: true }): Promise<{ write(bytes: Uint8Array): Promise<number>; close(): void }>
  stderr: { writeSync(bytes: Uint8Array): number }
  readTextFile(path: string): Promise<string>
  readTextFileSync(path: string): string
  realPathSync(path: string): string
  createHttpClient(options: { caCerts?: string[]; cert?: string; key?: string }): unknown
  writeTextFile(path: string, text: string, options?: { createNew?: boolean }): Promise<void>
  rename(from: string, to: string): Promise<void>
  pid: number
  resolveDns(host: string, type: 'A' | 'AAAA'): Promise<string[]>
  errors: { NotFound: new (...args: never[]) => Error }
  watchFs(path: string): AsyncIterable<{ kind: string; paths: string[] }> & { close(): void }
  addSignalListener(signal: string, listener: () => void): void
  memoryUsage(): { rss: number; heapTotal: number; heapUsed: number }
  serve(
    options: { hostname: string; port: number; reusePort?: boolean; onListen?: (addr: { port: number }) => void; onError?: (e: unknown) => Response; cert?: string; key?: string },
    handler: (request: Request, info: { remoteAddr: { hostname: string; port: number } }) => Response | Promise<Response>,
  ): { addr: { port: number }; shutdown(): Promise<void> }
  upgradeWebSocket(request: Request, options: { idleTimeout: number }): { socket: WebSocket; response: Response }
}

const encoder = new TextEncoder()

function writeAll(stream: { writeSync(b: Uint8Array): number }, text: string): void {
  let bytes = encoder.encode(`${text}\n`)
  while (bytes.length > 0) bytes = bytes.subarray(stream.writeSync(bytes))
}

/** Deno's write may take part of the bytes; an async write never blocks the event loop. */
async function writeAllAsync(stream: { write(bytes: Uint8Array): Promise<number> }, bytes: Uint8Array): Promise<void> {
  while (bytes.length > 0) bytes = bytes.subarray(await stream.write(bytes))
}

/**
 * One HTTP client per upstream TLS setting for WebSockets, so connections are pooled per trust root and
 * client certificate. Deno's client has no server name option: `server_name` is refused at load on Deno.
 */
const clientFor = oncePerUpstreamTls((tls) => {
  const { ca, cert, key } = readUpstreamTls(tls)
  return Deno.createHttpClient({ ...(ca === undefined ? {} : { caCerts: [ca] }), ...(cert === undefined ? {} : { cert, key }) })
})

/** The client's side of a bridge on Deno's server WebSocket: it sends any close code, but cannot pause, ping or be dropped. */
function clientSocket(socket: WebSocket): RelaySocket {
  return {
    send: (message: RelayMessage) => socket.send(message as string | ArrayBufferView<ArrayBuffer>),
    close: (code, reason) => (code === undefined ? socket.close() : socket.close(code, reason)),
    bufferedAmount: () => socket.bufferedAmount,
  }
}

/** Headers of the 101 that Deno.upgradeWebSocket writes itself. */
const DENO_HANDSHAKE = new Set(['upgrade', 'connection', 'sec-websocket-accept'])

/**
 * Answers a request that asks to upgrade: when the chain's answer carries a WebSocket session, the
 * client is upgraded with that answer's headers and bridged to the upstream the core opened.
 */
async function answerUpgrade(handler: Handler, request: Request, client: ClientInfo, bridges: LiveBridges): Promise<Response> {
  const response = await handler(request, client)
  const session = sessionOf(response)
  if (session === undefined) return response
  const bridge = bridges.open(session)
  let upgraded: { socket: WebSocket; response: Response }
  try {
    // Without `protocol`: Deno checks it against the offered list split on ", " only, and throws for
    // "a,b" (as the ws library sends it). The upstream's choice is in the answer's headers, copied below.
    upgraded = Deno.upgradeWebSocket(request, { idleTimeout: 0 })
  } catch {
    bridge.clientClosed(1006, '')
    return errorResponse('bad_request', 'the WebSocket handshake could not be completed', response.headers.get('x-request-id') ?? '')
  }
  const { socket } = upgraded
  socket.binaryType = 'arraybuffer'
  socket.onopen = () => bridge.clientOpened(clientSocket(socket))
  socket.onmessage = (event) => bridge.fromClient(event.data as string | ArrayBuffer)
  socket.onclose = (event) => bridge.clientClosed(event.code, event.reason)
  socket.onerror = () => {}
  for (const [name, value] of response.headers) if (!DENO_HANDSHAKE.has(name)) upgraded.response.headers.append(name, value)
  return upgraded.response
}

export function createDenoRuntime(): Runtime {
  return {
    name: 'deno',
    version: Deno.version.deno,
    pem: pemInspector,
    gaps: {
      clientCa: 'Deno.serve cannot verify client certificates; run this policy under Node, Bun or the binary',
      allowedSans: 'Deno.serve cannot verify client certificates, let alone their names; run this policy under Node, Bun or the binary',
      upstreamServerName:
        "Deno's fetch cannot send a server name other than the endpoint URL's host; run this policy under Node, Bun or the binary, or name the endpoint by that host (in DNS or /etc/hosts)",
    },
    // Deno's fetch has no connect timeout: Pillion's own HTTP/1.1 client on Deno.connect (h1-client.ts).
    upstream: withHttp2(h1Client(denoDial, poolsPerUpstreamTls())),
    websocket: webSocketClientConnector({
      options: (protocols, headers, tls) => ({ protocols, headers, ...(tls === undefined ? {} : { client: clientFor(tls) }) }),
      // Deno's client close() takes 1000 and 3000–4999 only: 1001, 1009 and the like go as 1000 with their reason.
      closeCode: clientApiCloseCode,
    }),
    serve(handler, options) {
      // Deno.serve speaks HTTP/2 but cannot send trailers: listeners with h2c or h2 run on Deno's node:http2.
      if (options.protocols !== undefined) return serveHttp2(handler, options, 'Deno')
      return options.tls === undefined ? serveDenoListener(handler, options).then(plainHttp) : rebindingServer((at) => serveDenoListener(handler, at), options, false)
    },
    upstreamTlsFilesChanged,
    redisStore: createRedisStore,
    readTextFile: (path) => Deno.readTextFile(path),
    readTextFileSync: (path) => Deno.readTextFileSync(path),
    async writeTextFile(path, text, options) {
      if (options?.createOnly === true) return Deno.writeTextFile(path, text, { createNew: true })
      const temporary = `${path}.${Deno.pid}.tmp`
      await Deno.writeTextFile(temporary, text)
      await Deno.rename(temporary, path)
    },
    watchFile(path, onChange) {
      const fire = debounce(onChange, 150)
      const dir = path.includes('/') ? path.slice(0, path.lastIndexOf('/')) || '/' : '.'
      const name = path.slice(path.lastIndexOf('/') + 1)
      // A ConfigMap's `..data` swap names no file of ours: see what the path resolves to now.
      const moved = resolvedTargetChange(path, (p) => Deno.realPathSync(p))
      const watcher = Deno.watchFs(dir)
      void (async () => {
        for await (const event of watcher) {
          // As on Node: another file's writes beside the policy (an access log) cannot move the path.
          const moves = event.kind !== 'modify' && event.kind !== 'access' && moved()
          if (moves || event.paths.some((p) => p.endsWith(`/${name}`))) fire()
        }
      })().catch(() => {})
      return () => watcher.close()
    },
    resolveDns: resolveBothFamilies,
    onSignal: (signal, listener) => Deno.addSignalListener(signal, listener),
    memory() {
      const usage = Deno.memoryUsage()
      return { residentBytes: usage.rss, heapUsedBytes: usage.heapUsed, heapTotalBytes: usage.heapTotal }
    },
    env: (name) => Deno.env.get(name),
    args: Deno.args,
    writeOut: (line) => writeAll(Deno.stdout, line),
    writeErr: (line) => writeAll(Deno.stderr, line),
    async openAppendSink(to) {
      if (to === 'stdout') return { write: (bytes) => writeAllAsync(Deno.stdout, bytes), close: async () => {} }
      const file = await Deno.open(to, { append: true, create: true })
      return { write: (bytes) => writeAllAsync(file, bytes), close: async () => file.close() }
    },
    exit: (code) => Deno.exit(code),
    workers: denoWorkers(),
    spawn: denoSpawn,
  }
}

/** A and AAAA together, as getaddrinfo gives them on Node and Bun; a name with only one family is fine. */
async function resolveBothFamilies(host: string): Promise<string[]> {
  const results = await Promise.allSettled([Deno.resolveDns(host, 'A'), Deno.resolveDns(host, 'AAAA')])
  const addresses = results.flatMap((result) => (result.status === 'fulfilled' ? result.value : []))
  if (addresses.length > 0) return addresses
  const failure = results.find((result) => result.status === 'rejected' && !(result.reason instanceof Deno.errors.NotFound))
  if (failure?.status === 'rejected') throw failure.reason
  throw new Error(`no A or AAAA records for ${host}`)
}

/** Deno.serve alone, or with a header deadline, a front of our own before it (connection-front.ts): Deno.serve has none. */
function serveDenoListener(handler: Handler, options: ServeOptions): Promise<PlainServer> {
  if (options.headersTimeoutRequired !== true || (options.headersTimeoutMs ?? 0) === 0) return serveDeno(handler, options)
  if (options.tls?.clientCa !== undefined) return serveDeno(handler, options) // refused there
  const startInner = (inner: ServeOptions, connections: FrontedConnections) => serveDeno(handler, inner, connections)
  return options.tls === undefined ? denoPlainFront(options, startInner) : connectionFront(options, startInner)
}

const FROM_ELSEWHERE = () => errorResponse('forbidden', 'this port takes connections from the listener in front of it only', crypto.randomUUID())

async function serveDeno(handler: Handler, options: ServeOptions, fronted?: FrontedConnections): Promise<PlainServer> {
  if (options.tls?.clientCa !== undefined) {
    throw new Error('Deno.serve cannot verify client certificates (tls.client_ca); run this policy under Node, Bun or the binary')
  }
  const tls = options.tls === undefined ? {} : { cert: options.tls.cert, key: options.tls.key }
  const bridges = new LiveBridges()
  const server = Deno.serve(
    { hostname: options.host, port: options.port, onListen: () => {}, ...tls, ...(options.reusePort === true ? { reusePort: true } : {}) },
    (request, info) => {
      const remoteAddress = fronted === undefined ? info.remoteAddr.hostname : fronted.clientOf(info.remoteAddr.port)
      if (remoteAddress === undefined) return FROM_ELSEWHERE()
      const client = { remoteAddress }
      // Only a request with Upgrade can become a WebSocket: the others skip the extra await.
      if (request.headers.get('upgrade') === null) return handler(request, client)
      return answerUpgrade(handler, request, client, bridges)
    },
  )
  return {
    host: options.host,
    port: server.addr.port,
    // shutdown() cuts open WebSockets without a close frame and cannot stop accepting without it,
    // so on Deno they get their 1001 (both ways) when the shutdown starts, not when its grace ends.
    async close() {
      await bridges.closeAll()
      await server.shutdown()
    },
    closeWebSockets: () => void bridges.closeAll(),
  }
}
