import { Hono } from 'hono'
import type { Config } from '../config/types.ts'
import type { BreakerSnapshot } from '../policies/context.ts'
import type { UpstreamRuntime } from '../proxy/upstream.ts'

export interface AdminState {
  config: Config
  ready: boolean
  draining: boolean
  upstreams: ReadonlyMap<string, UpstreamRuntime>
  breakers: ReadonlyMap<string, () => BreakerSnapshot>
  /** What config is in force and how the last reload went (GET /config/status). */
  status: () => ConfigStatus
  /** POST /reload: reads the policy again and applies it if valid. */
  reload: (() => Promise<ReloadOutcome>) | undefined
}

export interface ConfigStatus {
  /** Hash of the policy text in force. */
  version: string
  source?: string
  loadedAt?: string
  reloads?: { succeeded: number; failed: number; unchanged: number }
  lastReload?: ReloadOutcome
}

export interface ReloadOutcome {
  ok: boolean
  /** "file", "signal", "admin" or "control". */
  trigger: string
  at: string
  /** Hash of the text that was read; equal to the running version when unchanged. */
  version?: string
  changed?: boolean
  error?: string
  problems?: Array<{ path: string; message: string }>
}

/** The operator's side door: health, readiness and what config is in force. */
export function createAdminApp(state: AdminState): Hono {
  const app = new Hono()
  app.get('/healthz', (c) => c.json({ status: 'ok' }))
  app.get('/readyz', (c) => {
    if (state.ready && !state.draining) return c.json({ ready: true })
    return c.json({ ready: false, reason: state.draining ? 'draining' : 'starting' }, 503)
  })
  app.get('/config', (c) => c.json(state.config))
  app.get('/config/status', (c) => c.json(state.status()))
  app.post('/reload', async (c) => {
    if (state.reload === undefined) return c.json({ code: 'not_supported', message: 'this gateway was started without a reloadable source' }, 501)
    const outcome = await state.reload()
    return c.json(outcome, outcome.ok ? 200 : 422)
  })
  app.get('/breakers', (c) => c.json({ breakers: [...state.breakers.values()].map((snapshot) => snapshot()) }))
  app.get('/upstreams', (c) => c.json({ upstreams: [...state.upstreams.values()].map((upstream) => upstream.snapshot()) }))
  app.notFound((c) => c.json({ code: 'not_found', message: `no admin endpoint ${c.req.path}` }, 404))
  return app
}
