import { Hono } from 'hono'
import type { Context } from 'hono'
import { bearerAuth } from 'hono/bearer-auth'
import { timingSafeEqual } from 'hono/utils/buffer'
import { redactConfig } from './redact.ts'
import { DASHBOARD_HTML } from './dashboard.ts'
import type { Lock } from '../config/locks.ts'
import type { Config } from '../config/types.ts'
import type { GatewayMetrics } from '../observability/metrics.ts'
import { CONTENT_TYPES, negotiate } from '../observability/registry.ts'
import { dashboardStats } from '../observability/stats.ts'
import type { PolicyStates } from '../core/policy-states.ts'
import type { UpstreamRuntime } from '../upstream/upstream.ts'

export interface AdminState {
  config: Config
  ready: boolean
  draining: boolean
  upstreams: ReadonlyMap<string, UpstreamRuntime>
  /** Snapshots the policies registered: GET /breakers lists the circuit breakers. */
  states: PolicyStates
  /** GET /metrics, /stats and the dashboard; made once per process, so it outlives reloads. */
  metrics?: GatewayMetrics
  /** What config is in force and how the last reload went (GET /config/status). */
  status: () => ConfigStatus
  /** POST /reload: reads the policy again and applies it if valid. */
  reload: (() => Promise<ReloadOutcome>) | undefined
  /** Bearer token every endpoint but /healthz and /readyz requires (gateway.admin_token_env); none on loopback by default. */
  adminToken?: string | undefined
}

export interface ConfigStatus {
  /** Hash of the policy text in force. */
  version: string
  source?: string
  loadedAt?: string
  reloads?: { succeeded: number; failed: number; unchanged: number }
  lastReload?: ReloadOutcome
  /** The locked base ([control] base) the running policy satisfies: what it locks and where from. */
  base?: BaseStatus
}

export interface BaseStatus {
  /** The base's URL or file path. */
  source: string
  /** Where the base in force was read from: its URL, its file, or base_cache at start. */
  origin: 'url' | 'file' | 'cache'
  /** Hash of the base text in force. */
  version: string
  loadedAt: string
  /** Each locked key of the service's policy (`routes.*.jwt`) and where the base sets it (`defaults.jwt`). */
  locks: Lock[]
  /** The version of a newer base the running policy does not satisfy yet; lastReload says why. */
  pending?: string
  /** Why the base could not be read again; the last good one stays. */
  error?: string
}

export interface ReloadOutcome {
  ok: boolean
  /** "file", "signal", "admin", "control" or "base". */
  trigger: string
  at: string
  /** Hash of the text that was read; equal to the running version when unchanged. */
  version?: string
  changed?: boolean
  /** With the policy text unchanged: the TLS keys whose files changed and were put in service. */
  rotated?: string[]
  error?: string
  problems?: Array<{ path: string; message: string }>
}

/** GET /healthz, /readyz and /metrics: what the admin app and the probes app both answer. */
function probeHandlers(state: AdminState) {
  return {
    healthz: (c: Context) => c.json({ status: 'ok' }),
    readyz: (c: Context) => {
      if (state.ready && !state.draining) return c.json({ ready: true })
      return c.json({ ready: false, reason: state.draining ? 'draining' : 'starting' }, 503)
    },
    metrics: (c: Context) => {
      if (state.metrics === undefined) return c.json({ code: 'not_found', message: 'this gateway keeps no metrics' }, 404)
      const format = negotiate(c.req.header('accept'))
      return c.body(state.metrics.render(format), 200, { 'content-type': CONTENT_TYPES[format] })
    },
  }
}

/**
 * The probes listener (gateway.probes): health, readiness and metrics for the kubelet and Prometheus
 * on the pod IP, without a token. They reveal nothing and change nothing; the rest of the admin API
 * is not there at all (404), so it stays on loopback or behind its token.
 */
export function createProbesApp(state: AdminState): Hono {
  const app = new Hono()
  const { healthz, readyz, metrics } = probeHandlers(state)
  app.get('/healthz', healthz)
  app.get('/readyz', readyz)
  app.get('/metrics', metrics)
  app.notFound((c) => c.json({ code: 'not_found', message: `no probes endpoint ${c.req.path} (only /healthz, /readyz and /metrics)` }, 404))
  return app
}

/** The operator's side door: health, readiness and what config is in force. */
export function createAdminApp(state: AdminState): Hono {
  const { healthz, readyz, metrics } = probeHandlers(state)
  const app = new Hono()
  // Probes stay open: they reveal nothing, and container health checks cannot send a token.
  const locked = bearerAuth({ verifyToken: (token) => timingSafeEqual(token, state.adminToken ?? '') })
  app.use('*', (c, next) => (state.adminToken === undefined || c.req.path === '/healthz' || c.req.path === '/readyz' ? next() : locked(c, next)))
  app.get('/healthz', healthz)
  app.get('/readyz', readyz)
  app.get('/config', (c) => c.json(redactConfig(state.config)))
  app.get('/config/status', (c) => c.json(state.status()))
  app.post('/reload', async (c) => {
    if (state.reload === undefined) return c.json({ code: 'not_supported', message: 'this gateway was started without a reloadable source' }, 501)
    const outcome = await state.reload()
    return c.json(outcome, outcome.ok ? 200 : 422)
  })
  app.get('/breakers', (c) => c.json({ breakers: [...state.states.of('circuit_breaker').values()].map((snapshot) => snapshot()) }))
  app.get('/upstreams', (c) => c.json({ upstreams: [...state.upstreams.values()].map((upstream) => upstream.snapshot()) }))
  app.get('/metrics', metrics)
  app.get('/stats', (c) => {
    if (state.metrics === undefined) return c.json({ code: 'not_found', message: 'this gateway keeps no metrics' }, 404)
    return c.json(dashboardStats(state.metrics))
  })
  app.get('/', (c) => c.html(DASHBOARD_HTML))
  app.notFound((c) => c.json({ code: 'not_found', message: `no admin endpoint ${c.req.path}` }, 404))
  return app
}
