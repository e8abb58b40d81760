import { createAdminApp, type AdminState } from './admin/app.ts'
import { createGateway } from './app.ts'
import type { Config, HostPort } from './config/types.ts'
import type { EventBus } from './events.ts'
import type { Logger } from './log.ts'
import type { Runtime, Server } from './runtime/types.ts'

export interface RunningGateway {
  servers: Array<{ name: string; server: Server }>
  /** Stops accepting, lets in-flight requests finish up to the grace period. Resolves true if all drained. */
  shutdown(): Promise<boolean>
}

/** Longest any route may run, so a runtime's own idle cut-off never ends a request we still allow. */
function longestRequestMs(config: Config): number {
  let longest = 0
  for (const route of config.routes) longest = Math.max(longest, route.policies.timeoutMs)
  return longest
}

export function formatAddress({ host, port }: HostPort): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}

export async function startGateway(config: Config, runtime: Runtime, logger: Logger): Promise<RunningGateway> {
  const { listeners, upstreams, breakers, events } = createGateway(config, runtime, logger)
  subscribeLog(events, logger)
  const state: AdminState = { config, ready: false, draining: false, upstreams, breakers }
  const requestTimeoutMs = longestRequestMs(config)
  const servers: RunningGateway['servers'] = []
  const stopUpstreams = () => {
    for (const upstream of upstreams.values()) upstream.stop()
  }
  // Listeners first: the admin listener keeps answering /readyz (503, draining) while they drain.
  const closeAll = async () => {
    await Promise.all(servers.filter((s) => s.name !== 'admin').map(({ server }) => server.close()))
    stopUpstreams()
    await Promise.all(servers.filter((s) => s.name === 'admin').map(({ server }) => server.close()))
  }
  try {
    for (const { listener, app } of listeners) {
      const server = await runtime.serve(app.fetch, { host: listener.host, port: listener.port, requestTimeoutMs })
      servers.push({ name: listener.name, server })
      runtime.writeOut(`pillion: listener ${listener.name} (${listener.direction}) on http://${formatAddress(server)}`)
    }
    const admin = createAdminApp(state)
    const adminServer = await runtime.serve((request) => admin.fetch(request), { ...config.gateway.admin, requestTimeoutMs: 0 })
    servers.push({ name: 'admin', server: adminServer })
    runtime.writeOut(`pillion: admin on http://${formatAddress(adminServer)}`)
  } catch (error) {
    await closeAll()
    throw error
  }
  for (const upstream of upstreams.values()) upstream.start()
  state.ready = true
  return {
    servers,
    async shutdown() {
      state.draining = true
      let timer: ReturnType<typeof setTimeout> | undefined
      const graceOver = new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), config.gateway.shutdownGraceMs)
      })
      const drained = await Promise.race([closeAll().then(() => true as const), graceOver])
      clearTimeout(timer)
      if (!drained) logger.log('warn', 'shutdown grace ran out with requests still in flight')
      return drained
    },
  }
}

/** State changes an operator wants in the log; per-request events are left to metrics. */
function subscribeLog(events: EventBus, logger: Logger): void {
  events.on('breaker_transition', (e) => logger.log(e.to === 'open' ? 'warn' : 'info', 'circuit breaker changed state', e))
  events.on('endpoint_ejected', (e) => logger.log('warn', 'endpoint ejected', e))
  events.on('endpoint_returned', (e) => logger.log('info', 'endpoint returned', e))
  events.on('health_check', (e) => {
    if (e.changed) logger.log(e.healthy ? 'info' : 'warn', e.healthy ? 'endpoint healthy' : 'endpoint unhealthy', e)
  })
  events.on('discovery_updated', (e) => logger.log('info', 'endpoints discovered', e))
  events.on('discovery_failed', (e) => logger.log('warn', 'discovery failed; keeping the last good endpoints', e))
}
