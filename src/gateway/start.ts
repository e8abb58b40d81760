import { createAdminApp, createProbesApp, type AdminState } from '../admin/admin-api.ts'
import { createGateway, type GatewayApps } from './build.ts'
import type { Config } from '../config/types.ts'
import { EventBus } from '../core/events.ts'
import type { Logger } from '../core/log.ts'
import type { AuditLog } from '../observability/audit.ts'
import { createObservability } from '../observability/observability.ts'
import type { RequestObserver } from '../observability/observer.ts'
import { dryRunReporter } from '../policies/rate-limit/index.ts'
import { logTally } from '../policies/shared/log-tally.ts'
import type { GlobalLimitStore } from '../policies/rate-limit/global-store.ts'
import type { UpstreamRuntime } from '../upstream/upstream.ts'
import type { ClientInfo, Handler, Runtime, ServeOptions, Server } from '../core/host.ts'
import { StateCarrier, type Part } from '../core/state-carrier.ts'
import { adminToken } from '../admin/token.ts'
import { listenerServing, readTls, refuseUnservable, type Serving } from './listener-setup.ts'
import { ServedCertificates } from './certificates.ts'
import { VERSION } from '../core/version.ts'
import { formatAddress, type HostPort } from '../core/address.ts'

/** How long WebSockets closed at the end of the shutdown grace get to finish their close handshake. */
const WEBSOCKET_GOODBYE_MS = 1000

export interface RunningGateway {
  readonly config: Config
  /** Puts a new config in service: new requests see it, in-flight ones finish on the old one. */
  apply(config: Config): Promise<void>
  /** Stops accepting, lets in-flight requests finish up to the grace period. Resolves true if all drained. */
  shutdown(): Promise<boolean>
  /** Reads the TLS files again and puts changed ones in service; returns the keys that rotated, throws if they cannot be used. */
  rotateCertificates(): Promise<string[]>
}

export interface GatewayOptions {
  observers?: readonly RequestObserver[]
  /** What /config/status shows and POST /reload calls; the reloader fills them in. */
  admin?: Pick<AdminState, 'status' | 'reload'>
  /** Set in each worker of `pillion run --workers N` (src/workers.ts). */
  worker?: WorkerBinding
  /** Called when a TLS file of the config in service changes; `pillion run` reloads (which rotates). */
  onCertificateFileChanged?: () => void
}

/** How a worker binds: beside its siblings on the same addresses, and the admin and probes listeners in worker 0 only. */
export interface WorkerBinding {
  reusePort: boolean
  /** Whether this worker binds the admin listener and the probes listener (worker 0). */
  admin: boolean
  /** Ports worker 0 was given for listeners configured with port 0, so every worker binds the same ones. */
  ports: { listeners: Record<string, number>; admin?: number; probes?: number }
}

/** The operator's listeners, bound by worker 0 alone and closed last on shutdown. */
const ADMIN = ' admin'
const PROBES = ' probes'

/** Longest any route may run, so a runtime's own idle cut-off never ends a request we still allow. */
function longestRequestMs(config: Config): number {
  let longest = 0
  for (const route of config.routes) longest = Math.max(longest, route.policies.timeoutMs)
  return longest
}

/** What a bound server is compared by on reload: a listener is rebound when its address, TLS or header deadline changes. */
function bindingKey(address: HostPort, serving: Serving = {}): string {
  return serving.tls === undefined && serving.headersTimeoutMs === undefined && serving.protocols === undefined ? formatAddress(address) : `${formatAddress(address)} ${JSON.stringify(serving)}`
}

interface Bound {
  address: string
  server: Server
  /** The texts a TLS listener was bound with. */
  tls?: NonNullable<ServeOptions['tls']>
}

const NOT_SERVING = () =>
  new Response(JSON.stringify({ code: 'no_route', message: 'this listener is being removed' }), {
    status: 404,
    headers: { 'content-type': 'application/json' },
  })

/**
 * The gateway across config generations. Each listener's server dispatches to the app of the
 * generation in service; a reload builds the next generation beside it (keeping unchanged state
 * through the carrier), binds any new listener addresses, then swaps. Requests already inside an old
 * generation's chain finish there.
 */
export async function startGateway(config: Config, runtime: Runtime, logger: Logger, options: GatewayOptions = {}): Promise<RunningGateway> {
  const events = new EventBus()
  subscribeLog(events, logger)
  const carrier = new StateCarrier()
  // Once per process, before the first config: counters, the trace exporter and the access log outlive reloads.
  const observability = await createObservability(config, runtime, logger, VERSION)
  observability.watch(events)
  const observers = [...(options.observers ?? []), ...observability.observers]
  const build = (next: Config): GatewayApps => createGateway(next, runtime, logger, observers, events, carrier)

  const initialToken = adminToken(config.gateway.adminTokenEnv, runtime.env)
  await refuseUnservable(config, runtime)
  carrier.begin()
  let generation = build(config)
  const apps = new Map(generation.listeners.map(({ listener, app }) => [listener.name, app]))
  const state: AdminState = {
    config,
    ready: false,
    draining: false,
    upstreams: generation.upstreams,
    states: generation.states,
    metrics: observability.metrics,
    status: options.admin?.status ?? (() => ({ version: '' })),
    reload: options.admin?.reload,
    adminToken: initialToken,
  }
  const admin = createAdminApp(state)
  const probes = createProbesApp(state)
  observability.metrics.setSources(() => state)
  const bound = new Map<string, Bound>()
  const refusedOn = (listener: string) => (names: readonly string[], remoteAddress: string) =>
    events.emit('client_certificate_refused', { listener, remoteAddress, names })
  const certificates = new ServedCertificates(runtime, logger, refusedOn)
  const serverOf = (name: string) => bound.get(name)?.server
  const watchCertificates = (watched: Config) => {
    if (options.onCertificateFileChanged !== undefined) certificates.watch(watched, options.onCertificateFileChanged)
  }
  const dispatchers = new Map<string, Handler>()
  const dispatcherFor = (name: string): Handler => {
    let dispatch = dispatchers.get(name)
    if (dispatch === undefined) {
      dispatch = (request: Request, client: ClientInfo) => (apps.get(name)?.fetch(request, client) ?? NOT_SERVING()) as Promise<Response>
      dispatchers.set(name, dispatch)
    }
    return dispatch
  }

  async function bind(name: string, address: HostPort, label: string, handler: Handler, requestTimeoutMs: number, serving: Serving = {}): Promise<Bound> {
    const worker = options.worker
    const pinned =
      address.port !== 0 || worker === undefined ? undefined : name === ADMIN ? worker.ports.admin : name === PROBES ? worker.ports.probes : worker.ports.listeners[name]
    const serveOptions: ServeOptions = { host: address.host, port: pinned ?? address.port, requestTimeoutMs }
    if (worker?.reusePort === true && name !== ADMIN && name !== PROBES) serveOptions.reusePort = true
    if (serving.tls !== undefined) serveOptions.tls = await readTls(serving.tls, runtime.readTextFile, refusedOn(name))
    if (serving.headersTimeoutMs !== undefined) serveOptions.headersTimeoutMs = serving.headersTimeoutMs
    if (serving.protocols !== undefined) serveOptions.protocols = serving.protocols
    if (serving.headersTimeoutRequired === true) serveOptions.headersTimeoutRequired = true
    const server = await runtime.serve(handler, serveOptions)
    runtime.writeOut(`pillion: ${label} on ${serving.tls === undefined ? 'http' : 'https'}://${formatAddress(server)}`)
    return { address: bindingKey(address, serving), server, ...(serveOptions.tls === undefined ? {} : { tls: serveOptions.tls }) }
  }

  /** Binds what the config asks for and is not bound yet; returns the servers it replaced or no longer needs. */
  async function reconcile(next: Config): Promise<Server[]> {
    const requestTimeoutMs = longestRequestMs(next)
    const wanted = new Map<string, { address: HostPort; label: string; handler: Handler; timeout: number; serving?: Serving }>()
    for (const listener of Object.values(next.listeners)) {
      wanted.set(listener.name, {
        address: listener,
        label: `listener ${listener.name} (${listener.direction})`,
        handler: dispatcherFor(listener.name),
        timeout: requestTimeoutMs,
        serving: listenerServing(next, listener),
      })
    }
    if (options.worker?.admin !== false) {
      wanted.set(ADMIN, { address: next.gateway.admin, label: 'admin', handler: (request) => admin.fetch(request), timeout: 0 })
      if (next.gateway.probes !== undefined) wanted.set(PROBES, { address: next.gateway.probes, label: 'probes', handler: (request) => probes.fetch(request), timeout: 0 })
    }
    const fresh = new Map<string, Bound>()
    try {
      for (const [name, want] of wanted) {
        const current = bound.get(name)
        if (current !== undefined && current.address === bindingKey(want.address, want.serving)) continue
        fresh.set(name, await bind(name, want.address, want.label, want.handler, want.timeout, want.serving))
      }
    } catch (error) {
      await Promise.all([...fresh.values()].map(({ server }) => server.close()))
      throw error
    }
    const retired: Server[] = []
    for (const [name, { server }] of bound) if (!wanted.has(name) || fresh.has(name)) retired.push(server)
    for (const name of [...bound.keys()]) if (!wanted.has(name)) bound.delete(name)
    for (const [name, entry] of fresh) {
      bound.set(name, entry)
      certificates.bound(name, entry.tls)
    }
    return retired
  }

  try {
    await reconcile(config)
  } catch (error) {
    stopParts(carrier.abort())
    await Promise.all([...bound.values()].map(({ server }) => server.close()))
    await observability.close(0)
    throw error
  }
  startParts(carrier.commit().created)
  await certificates.remember(config)
  watchCertificates(config)
  state.ready = true

  const running: RunningGateway = {
    get config() {
      return state.config
    },
    async apply(next) {
      const nextToken = adminToken(next.gateway.adminTokenEnv, runtime.env)
      await refuseUnservable(next, runtime)
      const observing = await observability.prepare(next)
      carrier.begin()
      let nextGeneration: GatewayApps
      let retired: Server[]
      try {
        nextGeneration = build(next)
        retired = await reconcile(next)
      } catch (error) {
        stopParts(carrier.abort())
        observing.abort()
        throw error
      }
      generation = nextGeneration
      apps.clear()
      for (const { listener, app } of generation.listeners) apps.set(listener.name, app)
      state.config = next
      state.adminToken = nextToken
      state.upstreams = generation.upstreams
      state.states = generation.states
      observing.commit()
      const { created, dropped } = carrier.commit()
      startParts(created)
      stopParts(dropped)
      // Old servers stop accepting now and finish their in-flight requests in the background.
      for (const server of retired) void server.close()
      watchCertificates(next)
      // Listeners kept as they were, and upstreams, may have new files behind the same names.
      await certificates.rotate(next, serverOf).catch((error: Error) => logger.log('error', 'certificates not rotated', { error: error.message }))
    },
    rotateCertificates: () => certificates.rotate(state.config, serverOf),
    async shutdown() {
      state.draining = true
      certificates.unwatch()
      const graceEndsAt = performance.now() + state.config.gateway.shutdownGraceMs
      let timer: ReturnType<typeof setTimeout> | undefined
      const graceOver = new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), state.config.gateway.shutdownGraceMs)
      })
      // Listeners first: the admin and probes listeners keep answering /readyz (503, draining) while they drain.
      const operators = (name: string) => name === ADMIN || name === PROBES
      const closeAll = async () => {
        await Promise.all([...bound].filter(([name]) => !operators(name)).map(([, { server }]) => server.close()))
        for (const upstream of generation.upstreams.values()) upstream.stop()
        await Promise.all([...bound].filter(([name]) => operators(name)).map(([, { server }]) => server.close()))
      }
      const closed = closeAll()
      const drained = await Promise.race([closed.then(() => true as const), graceOver])
      clearTimeout(timer)
      // WebSockets may use the whole grace (they keep the listener's close waiting); now they get 1001,
      // and a moment to say goodbye, so their access-log lines are written below.
      if (!drained) {
        for (const { server } of bound.values()) server.closeWebSockets()
        await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, WEBSOCKET_GOODBYE_MS))])
      }
      // Access log lines and spans of the drained requests; a collector that is down gets a second at most.
      await observability.close(Math.max(1000, graceEndsAt - performance.now()))
      // The audit trail last, so it holds the drained requests too; it gets what is left of the grace.
      await generation.audit?.close(graceEndsAt - performance.now())
      await generation.globalLimits?.close()
      if (!drained) logger.log('warn', 'shutdown grace ran out with requests still in flight')
      return drained
    },
  }
  return running
}

/** Upstreams run timers (health checks, discovery): they start when they enter service... */
function startParts(parts: Part[]): void {
  for (const [key, part] of parts) if (key.startsWith('upstream:')) (part as UpstreamRuntime).start()
  for (const [key, part] of parts) if (key.startsWith('security:')) (part as { start?(): void }).start?.()
}

/** ...and stop when no config uses them any more. */
function stopParts(parts: Part[]): void {
  for (const [key, part] of parts) if (key.startsWith('upstream:')) (part as UpstreamRuntime).stop()
  for (const [key, part] of parts) if (key.startsWith('security:')) (part as { stop?(): void }).stop?.()
  for (const [key, part] of parts) if (key === 'audit') void (part as AuditLog).retire()
  for (const [key, part] of parts) if (key === 'redis') void (part as GlobalLimitStore).close()
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
  events.on('jwks_refresh', (e) => {
    if (!e.ok) logger.log('warn', e.keys > 0 ? 'JWKS fetch failed; keeping the cached keys' : 'JWKS fetch failed; no keys to verify tokens with', e)
  })
  events.on('api_keys_loaded', (e) => logger.log('info', 'API keys loaded', e))
  events.on('api_keys_failed', (e) => logger.log('warn', 'API keys file rejected; keeping the last good keys', e))
  // The first failure of a batch, not every retry; overflow drops are per request, left to metrics.
  events.on('audit_failed', (e) => {
    if (e.attempt === 1) logger.log('warn', 'audit sink failed; retrying with backoff', e)
  })
  events.on('audit_dropped', (e) => {
    if (e.reason !== 'queue_full') logger.log('warn', 'audit records dropped', e)
  })
  events.on('rate_limit_decision', dryRunReporter((e) => logger.log('warn', 'rate limit would have rejected (dry run)', { ...e })))
  const authzTally = logTally(1000, () => performance.now())
  events.on('authz_refused', (e) => {
    if (!e.dryRun) return
    const count = authzTally(`${e.route}\u0000${e.rule}`)
    if (count !== undefined) logger.log('warn', 'authz would have refused (dry run)', { route: e.route, rule: e.rule, would_refuse: count })
  })
  const authorizerTally = logTally(1000, () => performance.now())
  events.on('ext_authz_decision', (e) => {
    if (e.error === undefined) return
    const count = authorizerTally(`${e.route}\u0000${e.error}`)
    if (count !== undefined) {
      const message = e.result === 'error_allowed' ? 'authorization service failed; letting requests through (on_error = "allow")' : 'authorization service failed; refusing requests (on_error = "deny")'
      logger.log('warn', message, { route: e.route, url: e.url, error: e.error, requests: count })
    }
  })
  events.on('redis_error', (e) => logger.log('warn', 'redis failed; rate limits on it follow [redis] on_error', e))
  events.on('redis_recovered', (e) => logger.log('info', 'redis answers again', e))
}
