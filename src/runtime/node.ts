import { serve } from '@hono/node-server'
import type { AddressInfo } from 'node:net'
import { nodeUpstream } from './node-upstream.ts'
import type { Runtime, Server } from './types.ts'
import { processHost } from './process-host.ts'

export function createNodeRuntime(): Runtime {
  return {
    name: 'node',
    version: process.versions.node,
    upstream: nodeUpstream,
    serve(handler, options) {
      return new Promise<Server>((resolve, reject) => {
        const server = serve(
          {
            fetch: (request, env) => handler(request, { remoteAddress: env.incoming.socket.remoteAddress ?? '' }),
            hostname: options.host,
            port: options.port,
            serverOptions: { requestTimeout: 0, keepAliveTimeout: 5_000 },
          },
          (info: AddressInfo) =>
            resolve({
              host: options.host,
              port: info.port,
              close: () =>
                new Promise<void>((done) => {
                  server.close(() => done())
                  if ('closeIdleConnections' in server) server.closeIdleConnections()
                }),
            }),
        )
        server.once('error', reject)
      })
    },
    ...processHost(),
  }
}
