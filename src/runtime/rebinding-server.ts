import type { ServeOptions, Server } from '../core/host.ts'

/** A bound server as an adapter starts it, before anything can change its TLS. */
export type PlainServer = Omit<Server, 'updateTls'>

/** A listener without TLS: the gateway never asks it for new certificates. */
export function plainHttp(server: PlainServer): Server {
  return { ...server, updateTls: () => Promise.reject(new Error('this listener does not terminate TLS')) }
}

/** How long a listener that must give up its port before binding it again waits for the port to come free. */
const REBIND_TRIES = 100
const REBIND_PAUSE_MS = 10

/**
 * A TLS listener for servers that cannot change their certificate once started (Bun.serve keeps its
 * TLS through reload(), Deno.serve has no such call): new certificates are served by a new server on
 * the same port, and the old one stops accepting and drains as on shutdown, so requests in flight
 * finish where they are.
 *
 * With `sharePort` (Bun) the new server binds beside the old one with SO_REUSEPORT, so no connection
 * is ever refused; TLS listeners are then always bound with it. Without (Deno, whose TLS listener
 * takes SO_REUSEPORT only under --unstable-net) the old one lets go of the port first and the new one
 * binds as soon as it is free: a few milliseconds in which new connections are refused.
 */
export async function rebindingServer(start: (options: ServeOptions) => Promise<PlainServer>, options: ServeOptions, sharePort: boolean): Promise<Server> {
  let current = await start(sharePort ? { ...options, reusePort: true } : options)
  const bindAt: ServeOptions = { ...options, port: current.port, ...(sharePort ? { reusePort: true } : {}) }
  const draining = new Set<PlainServer>()
  const retire = (old: PlainServer) => {
    draining.add(old)
    void old.close().finally(() => draining.delete(old))
  }
  return {
    host: current.host,
    port: current.port,
    async updateTls(tls) {
      if (sharePort) {
        const next = await start({ ...bindAt, tls })
        retire(current)
        current = next
        return
      }
      retire(current)
      current = await bindWhenFree(() => start({ ...bindAt, tls }))
    },
    async close() {
      await Promise.all([current.close(), ...[...draining].map((server) => server.close())])
    },
    closeWebSockets() {
      current.closeWebSockets()
      for (const server of draining) server.closeWebSockets()
    },
  }
}

async function bindWhenFree(bind: () => Promise<PlainServer>): Promise<PlainServer> {
  for (let tries = 1; ; tries++) {
    try {
      return await bind()
    } catch (error) {
      if (tries >= REBIND_TRIES || !/in use/i.test(String(error))) throw error
      await new Promise((resolve) => setTimeout(resolve, REBIND_PAUSE_MS))
    }
  }
}
