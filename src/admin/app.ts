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
  app.get('/breakers', (c) => c.json({ breakers: [...state.breakers.values()].map((snapshot) => snapshot()) }))
  app.get('/upstreams', (c) => c.json({ upstreams: [...state.upstreams.values()].map((upstream) => upstream.snapshot()) }))
  app.notFound((c) => c.json({ code: 'not_found', message: `no admin endpoint ${c.req.path}` }, 404))
  return app
}
