import { fetchUpstream } from './fetch-upstream.ts'
import type { Runtime } from './types.ts'
import { processHost } from './process-host.ts'

declare const Bun: {
  version: string
  serve(options: Record<string, unknown>): {
    port: number
    hostname: string
    stop(closeActiveConnections?: boolean): Promise<void>
    requestIP(request: Request): { address: string } | null
  }
}

/** Bun's idle timeout counts a request still waiting on its upstream; it tops out at 255 s (0 = off). */
export function idleTimeoutSeconds(requestTimeoutMs: number): number {
  const seconds = Math.ceil(requestTimeoutMs / 1000) + 5
  return requestTimeoutMs === 0 || seconds > 255 ? 0 : Math.max(seconds, 10)
}

const CONNECT_CODES = new Set(['ConnectionRefused', 'ECONNREFUSED', 'FailedToOpenSocket', 'EHOSTUNREACH', 'ENOTFOUND'])

export function createBunRuntime(): Runtime {
  return {
    name: 'bun',
    version: Bun.version,
    upstream: fetchUpstream({
      extraInit: { decompress: false },
      classify: (error) => (CONNECT_CODES.has((error as { code?: string })?.code ?? '') ? 'connect-failure' : 'reset'),
    }),
    async serve(handler, options) {
      const server = Bun.serve({
        hostname: options.host,
        port: options.port,
        development: false,
        idleTimeout: idleTimeoutSeconds(options.requestTimeoutMs),
        maxRequestBodySize: Number.MAX_SAFE_INTEGER,
        fetch: (request: Request, bunServer: typeof server) =>
          handler(request, { remoteAddress: bunServer.requestIP(request)?.address ?? '' }),
      })
      return { host: options.host, port: server.port, close: () => server.stop() }
    },
    ...processHost(),
  }
}
