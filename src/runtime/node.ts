import { serve } from '@hono/node-server'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { nodeUpstream } from './node-upstream.ts'
import { upstreamTlsFilesChanged } from './upstream-tls.ts'
import { serveHttp2 } from './h2-server.ts'
import { withHttp2 } from './h2-upstream.ts'
import { refuseTunnel, Upgrades } from './node-upgrade.ts'
import { nodeWebSocket } from './node-websocket.ts'
import type { SecureContextOptions, Server as TlsServer } from 'node:tls'
import type { Runtime, ServeOptions, Server } from '../core/host.ts'
import { refuseUnlistedPeer } from './peer-certificate.ts'
import { pemInspector } from './pem.ts'
import { nodeFetch } from './node-answer.ts'
import { processHost } from './process-host.ts'
import { createRedisStore } from './redis.ts'
import { clusterWorkers } from './workers-node.ts'
import { NodeHeaders } from './node-headers.ts'
import type { FieldsToHeaders } from './h2-fields.ts'

/** HTTP/2 requests, answers and trailers in NodeHeaders, as HTTP/1.1's are (node-answer.ts, node-upstream.ts). */
const nodeHttp2Headers: FieldsToHeaders = (fields) => NodeHeaders.fromParsed(fields, true) as unknown as Headers

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

export function createNodeRuntime(): Runtime {
  return {
    name: 'node',
    version: process.versions.node,
    upstream: withHttp2(nodeUpstream, nodeHttp2Headers),
    upstreamTlsFilesChanged,
    pem: pemInspector,
    gaps: {},
    websocket: nodeWebSocket,
    serve(handler, options) {
      if (options.protocols !== undefined) return serveHttp2(handler, options, 'Node', nodeHttp2Headers)
      return new Promise<Server>((resolve, reject) => {
        const upgrades = new Upgrades(handler)
        const server = serve(
          {
            fetch: nodeFetch(handler),
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
