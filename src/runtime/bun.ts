import { readFileSync } from 'node:fs'
import { fetchUpstream } from './fetch-upstream.ts'
import type { Runtime, ServeOptions } from '../core/host.ts'
import { processHost } from './process-host.ts'
import { createRedisStore } from './redis.ts'
import { reusePortProcesses } from './workers-process.ts'

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

const caTexts = new Map<string, string>()

/** An upstream CA file, read on first use. */
function caText(caFile: string): string {
  let text = caTexts.get(caFile)
  if (text === undefined) caTexts.set(caFile, (text = readFileSync(caFile, 'utf8')))
  return text
}

function bunTls(tls: NonNullable<ServeOptions['tls']>): Record<string, unknown> {
  const { cert, key, clientCa } = tls
  return clientCa === undefined ? { cert, key } : { cert, key, ca: clientCa, requestCert: true, rejectUnauthorized: true }
}

export function createBunRuntime(): Runtime {
  return {
    name: 'bun',
    version: Bun.version,
    upstream: fetchUpstream({
      extraInit: { decompress: false },
      classify: (error) => (CONNECT_CODES.has((error as { code?: string })?.code ?? '') ? 'connect-failure' : 'reset'),
      trustCa: (caFile) => ({ tls: { ca: caText(caFile) } }),
    }),
    async serve(handler, options) {
      const server = Bun.serve({
        hostname: options.host,
        port: options.port,
        development: false,
        idleTimeout: idleTimeoutSeconds(options.requestTimeoutMs),
        maxRequestBodySize: Number.MAX_SAFE_INTEGER,
        // Bun has no header deadline; idleTimeout above is the nearest it has (see README, Security).
        ...(options.tls === undefined ? {} : { tls: bunTls(options.tls) }),
        ...(options.reusePort === true ? { reusePort: true } : {}),
        fetch: (request: Request, bunServer: typeof server) =>
          handler(request, { remoteAddress: bunServer.requestIP(request)?.address ?? '' }),
      })
      return { host: options.host, port: server.port, close: () => server.stop() }
    },
    redisStore: createRedisStore,
    workers: reusePortProcesses('Bun'),
    ...processHost(),
  }
}
