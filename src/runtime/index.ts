import type { Runtime } from '../core/host.ts'

/** Picks the adapter for the runtime we are on; each adapter is imported only where it can run. */
export async function loadRuntime(): Promise<Runtime> {
  const host = globalThis as { Bun?: unknown; Deno?: unknown }
  if (host.Deno !== undefined) return (await import('./deno.ts')).createDenoRuntime()
  if (host.Bun !== undefined) return (await import('./bun.ts')).createBunRuntime()
  return (await import('./node.ts')).createNodeRuntime()
}
