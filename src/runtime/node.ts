import { serve } from '@hono/node-server'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { nodeUpstream } from './node-upstream.ts'
import { upstreamTlsFilesChanged } from './upstream-tls.ts'
import { refuseTunnel, Upgrades } from './node-upgrade.ts'
import { nodeWebSocket } from './node-websocket.ts'
import type { SecureContextOptions, Server as TlsServer, TLSSocket } from 'node:tls'
import type { ClientInfo, PeerNamesCheck, Runtime, ServeOptions, Server } from '../core/host.ts'
import { subjectAltNames } from './peer-certificate.ts'
import { pemInspector } from './pem.ts'
import { processHost } from './process-host.ts'
import { createRedisStore } from './redis.ts'
import { clusterWorkers } from './workers-node.ts'

/** Node checks headersTimeout every connectionsCheckingInterval (30s by default): check often enough to keep it. */
function headersDeadline(ms: number | undefined): Record<string, number> {
  if (ms === undefined) return {}
  if (ms === 0) return { headersTimeout: 0 }
  return { headersTimeout: ms, connectionsCheckingInterval: Math.max(250, Math.min(ms, 1000)) }
}

function tlsOptions(tls: ServeOptions['tls']): Record<string, unknown> {
  if (tls === undefined) return {}
  const { cert, key, clientCa } = tls
  return clientCa === undefined ? { cert, key } : { cert, key, ca: clientCa, requestCert: true, rejectUnauthorized: true }
}

/**
 * allowed_sans: a client whose verified certificate carries none of the allowed names is dropped
 * right after its handshake, before any request is read (as Envoy's SAN matchers fail the handshake).
 */
function refuseUnlistedPeer(acceptsPeer: PeerNamesCheck): (socket: TLSSocket) => void {
  return (socket) => {
    if (!acceptsPeer(subjectAltNames(socket.getPeerCertificate().subjectaltname), socket.remoteAddress ?? '')) socket.destroy()
  }
}

/** The client of one request: its address, and its going away seen on the response's 'close'. */
class NodeClient implements ClientInfo {
  readonly remoteAddress: string
  readonly #outgoing: ServerResponse

  constructor(incoming: IncomingMessage, outgoing: ServerResponse) {
    this.remoteAddress = incoming.socket.remoteAddress ?? ''
    this.#outgoing = outgoing
  }

  /** 'close' before the response finished is what @hono/node-server itself reads as the client leaving. */
  watchGone(listener: { handleEvent(): void }): () => void {
    const outgoing = this.#outgoing
    const onClose = () => {
      if (!outgoing.writableFinished) listener.handleEvent()
    }
    outgoing.once('close', onClose)
    return () => outgoing.off('close', onClose)
  }
}

export function createNodeRuntime(): Runtime {
  return {
    name: 'node',
    version: process.versions.node,
    upstream: nodeUpstream,
    upstreamTlsFilesChanged,
    pem: pemInspector,
    gaps: {},
    websocket: nodeWebSocket,
    serve(handler, options) {
      return new Promise<Server>((resolve, reject) => {
        const upgrades = new Upgrades(handler)
        const server = serve(
          {
            fetch: (request, env) => handler(request, new NodeClient(env.incoming as IncomingMessage, env.outgoing as ServerResponse)),
            hostname: options.host,
            port: options.port,
            serverOptions: { requestTimeout: 0, keepAliveTimeout: 5_000, ...headersDeadline(options.headersTimeoutMs), ...tlsOptions(options.tls) },
            ...(options.tls === undefined ? {} : { createServer: createHttpsServer as never }),
          },
          (info: AddressInfo) =>
            resolve({
              host: options.host,
              port: info.port,
              // Node waits for upgraded sockets too, and closeAllConnections() leaves them be.
              close: () =>
                new Promise<void>((done) => {
                  server.close(() => done())
                  if ('closeIdleConnections' in server) server.closeIdleConnections()
                }),
              closeWebSockets: () => upgrades.close(),
              // New handshakes get the new context; connections already up keep theirs.
              updateTls: async (tls) => (server as unknown as TlsServer).setSecureContext(tlsOptions(tls) as SecureContextOptions),
            }),
        )
        server.once('error', reject)
        const acceptsPeer = options.tls?.acceptsPeer
        if (acceptsPeer !== undefined) server.prependListener('secureConnection', refuseUnlistedPeer(acceptsPeer))
        server.on('connect', refuseTunnel)
        server.on('upgrade', upgrades.listener)
      })
    },
    redisStore: createRedisStore,
    // Node 20 cannot set SO_REUSEPORT (options.reusePort): cluster workers share the primary's socket instead.
    workers: clusterWorkers(),
    ...processHost(),
  }
}
