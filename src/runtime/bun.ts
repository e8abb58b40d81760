import { errorResponse } from '../core/errors.ts'
import { serveHttp2 } from './h2-server.ts'
import { withHttp2 } from './h2-upstream.ts'
import { h1Client, poolsPerUpstreamTls } from './h1-client.ts'
import { bunClientTls, bunDial } from './bun-dial.ts'
import type { ClientInfo, Handler, Runtime, ServeOptions } from '../core/host.ts'
import { plainHttp, rebindingServer, type PlainServer } from './rebinding-server.ts'
import { connectionFront, type FrontedConnections } from './connection-front.ts'
import { bunFront } from './bun-front.ts'
import { bunTimers, type BunTimers } from './bun-timers.ts'
import { sessionOf } from '../core/websocket.ts'
import { pemInspector } from './pem.ts'
import { processHost } from './process-host.ts'
import { createRedisStore } from './redis.ts'
import { reusePortProcesses } from './workers-process.ts'
import { BUFFER_SLACK_BYTES, LiveBridges, type RelaySocket, type WebSocketBridge } from './ws-relay.ts'
import { webSocketClientConnector } from './ws-upstream.ts'
import { upstreamTlsFilesChanged } from './upstream-tls.ts'

interface BunServer {
  port: number
  hostname: string
  stop(closeActiveConnections?: boolean): Promise<void>
  requestIP(request: Request): { address: string; port: number } | null
  timeout(request: Request, seconds: number): void
  upgrade(request: Request, options: { data: WebSocketBridge; headers: Headers }): boolean
}

/** Bun's ServerWebSocket, as far as the bridge uses it. */
interface BunServerWebSocket {
  data: WebSocketBridge
  send(message: string | ArrayBufferView | ArrayBuffer): number
  close(code?: number, reason?: string): void
  terminate(): void
  getBufferedAmount(): number
  pause(): void
  resume(): void
  ping(data?: Uint8Array): number
}

declare const Bun: {
  version: string
  serve(options: Record<string, unknown>): BunServer
}

/**
 * Bun reads a whole message before the bridge sees it, so this caps what one client message may hold
 * in memory whatever a route's max_message; a larger one Bun closes with 1009 itself. The bridge
 * checks each route's own limit.
 */
export const BUN_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

/** The client's side of a bridge on Bun's ServerWebSocket: it can pause, ping and be dropped. */
function clientSocket(ws: BunServerWebSocket): RelaySocket {
  return {
    send: (message) => void ws.send(message),
    close: (code, reason) => (code === undefined ? ws.close() : ws.close(code, reason)),
    bufferedAmount: () => ws.getBufferedAmount(),
    terminate: () => ws.terminate(),
    pause: () => ws.pause(),
    resume: () => ws.resume(),
    ping: (data) => void ws.ping(data),
  }
}

/** Bun's WebSocket handlers: each connection's data is its bridge. */
const bridgeHandlers = {
  // The bridge pauses a sender long before this; past it Bun would drop messages, so it closes instead.
  backpressureLimit: BUN_MAX_MESSAGE_BYTES + 2 * BUFFER_SLACK_BYTES,
  closeOnBackpressureLimit: true,
  maxPayloadLength: BUN_MAX_MESSAGE_BYTES,
  // Each route has its own idle timeout, kept by the bridge; Bun's is server-wide and pings by itself.
  idleTimeout: 0,
  sendPings: false,
  perMessageDeflate: false,
  open: (ws: BunServerWebSocket) => ws.data.clientOpened(clientSocket(ws)),
  message: (ws: BunServerWebSocket, message: string | Uint8Array) => ws.data.fromClient(message),
  ping: (ws: BunServerWebSocket, data: Uint8Array) => ws.data.clientPing(data),
  pong: (ws: BunServerWebSocket) => ws.data.pong(),
  drain: (ws: BunServerWebSocket) => ws.data.drained(),
  close: (ws: BunServerWebSocket, code: number, reason: string) => ws.data.clientClosed(code, reason),
}

/**
 * Answers a request that asks to upgrade: when the chain's answer carries a WebSocket session, the
 * client is upgraded with that answer's headers and bridged to the upstream the core opened.
 */
async function answerUpgrade(handler: Handler, request: Request, client: ClientInfo, server: BunServer, bridges: LiveBridges): Promise<Response | undefined> {
  const response = await handler(request, client)
  const session = sessionOf(response)
  if (session === undefined) return response
  const bridge = bridges.open(session)
  // Bun runs the open handler inside upgrade(): the bridge is ready before it is called.
  if (tryUpgrade(server, request, bridge, response.headers)) return undefined
  // Not a WebSocket handshake Bun can complete (no Sec-WebSocket-Key, say): the upstream side goes too.
  bridge.clientClosed(1006, '')
  return errorResponse('bad_request', 'the WebSocket handshake could not be completed', response.headers.get('x-request-id') ?? '')
}

function tryUpgrade(server: BunServer, request: Request, bridge: WebSocketBridge, headers: Headers): boolean {
  try {
    return server.upgrade(request, { data: bridge, headers })
  } catch {
    return false
  }
}

function bunTls(tls: NonNullable<ServeOptions['tls']>): Record<string, unknown> {
  const { cert, key, clientCa } = tls
  return clientCa === undefined ? { cert, key } : { cert, key, ca: clientCa, requestCert: true, rejectUnauthorized: true }
}

export function createBunRuntime(): Runtime {
  return {
    name: 'bun',
    version: Bun.version,
    pem: pemInspector,
    // Bun.serve shows no client certificate and has no header deadline: a front does both (connection-front.ts).
    gaps: {},
    // Bun's fetch has no connect timeout: Pillion's own HTTP/1.1 client on Bun.connect (h1-client.ts).
    upstream: withHttp2(h1Client(bunDial, poolsPerUpstreamTls())),
    websocket: webSocketClientConnector({
      // No permessage-deflate upstream either, as on the other runtimes: the bridge relays plain messages.
      options: (protocols, headers, tls) => ({ protocols, headers, perMessageDeflate: false, ...(tls === undefined ? {} : { tls: bunClientTls(tls) }) }),
      closeCode: (code) => code,
    }),
    serve(handler, options) {
      // Bun.serve speaks no HTTP/2: listeners with h2c or h2 run on Bun's node:http2.
      if (options.protocols !== undefined) return serveHttp2(handler, options, 'Bun')
      return options.tls === undefined ? serveBunListener(handler, options).then(plainHttp) : rebindingServer((at) => serveBunListener(handler, at), options, true)
    },
    redisStore: createRedisStore,
    upstreamTlsFilesChanged,
    workers: reusePortProcesses('Bun'),
    ...processHost(),
  }
}

/**
 * Bun.serve alone when it can keep the listener's header deadline itself (bun-timers.ts); otherwise,
 * or with allowed_sans, a front of our own before it (connection-front.ts), which costs CPU per
 * request and then keeps the deadline.
 */
function serveBunListener(handler: Handler, options: ServeOptions): Promise<PlainServer> {
  const timers = bunTimers(options)
  const startInner = (inner: ServeOptions, connections: FrontedConnections) => serveBun(handler, inner, bunTimers(inner)!, connections)
  // Client certificate names need node:tls (Bun's sockets do not show the peer's certificate).
  if (options.tls?.acceptsPeer !== undefined) {
    const { headersTimeoutMs, ...withoutDeadline } = options
    return connectionFront(options.headersTimeoutRequired === true ? options : withoutDeadline, startInner)
  }
  if (timers !== undefined) return serveBun(handler, options, timers)
  return bunFront(options, startInner, options.tls === undefined ? undefined : bunTls(options.tls))
}

const FROM_ELSEWHERE = () => errorResponse('forbidden', 'this port takes connections from the listener in front of it only', crypto.randomUUID())

async function serveBun(handler: Handler, options: ServeOptions, timers: BunTimers, fronted?: FrontedConnections): Promise<PlainServer> {
  const bridges = new LiveBridges()
  const perRequest = timers.perRequest
  const server: BunServer = Bun.serve({
    hostname: options.host,
    port: options.port,
    development: false,
    idleTimeout: timers.idleTimeout,
    maxRequestBodySize: Number.MAX_SAFE_INTEGER,
    ...(options.tls === undefined ? {} : { tls: bunTls(options.tls) }),
    ...(options.reusePort === true ? { reusePort: true } : {}),
    websocket: bridgeHandlers,
    fetch: (request: Request, bunServer: BunServer) => {
      if (perRequest !== undefined) bunServer.timeout(request, perRequest)
      let client: ClientInfo
      if (fronted === undefined) client = { remoteAddress: bunServer.requestIP(request)?.address ?? '' }
      else {
        const remoteAddress = fronted.clientOf(bunServer.requestIP(request)?.port ?? 0)
        if (remoteAddress === undefined) return FROM_ELSEWHERE()
        client = { remoteAddress }
      }
      // Only a request with Upgrade can become a WebSocket: the others skip the extra await.
      if (request.headers.get('upgrade') === null) return handler(request, client)
      return answerUpgrade(handler, request, client, bunServer, bridges)
    },
  })
  return {
    host: options.host,
    port: server.port,
    // stop() waits for open WebSockets; closeWebSockets ends them when the shutdown grace is over.
    close: () => server.stop(),
    closeWebSockets: () => void bridges.closeAll(),
  }
}
