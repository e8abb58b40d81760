// What the quota tests on Redis share: the policy (a shared bucket, a per-tenant quota, a roomy
// limit for steady load), bursts from many connections, and steady load that notes every answer.
import assert from 'node:assert/strict'
import { deferred, request, targets, type Gateway, type Reply, type Target, type Upstream } from './harness.ts'

/** A window whose next boundary is at least ten minutes off, so a test cannot straddle two windows. */
function quotaWindow(): string {
  const candidates: Array<[string, number]> = [['1d', 86_400_000], ['7h', 7 * 3_600_000], ['5h', 5 * 3_600_000]]
  return candidates.find(([, ms]) => ms - (Date.now() % ms) > 600_000)![0]
}

/** `redis` is the [redis] table's body: its servers, on_error and timeout. */
export function quotaPolicy(service: string, upstream: Pick<Upstream, 'url'>, redis: string): string {
  return `
[gateway]
service = "${service}"
admin = "127.0.0.1:0"

[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"

[upstreams.app]
endpoints = ["${upstream.url}"]

[redis]
${redis}

[[routes]]
name = "shared"
listener = "ingress"
path = "/shared"
upstream = "app"
[[routes.rate_limit]]
name = "bucket"
rate = "1/h"
burst = 40
key = "route"
store = "redis"

[[routes]]
name = "quota"
listener = "ingress"
path = "/quota"
upstream = "app"
[[routes.rate_limit]]
name = "per-tenant"
quota = { limit = 25, per = "${quotaWindow()}" }
key = "header:x-tenant"
store = "redis"

[[routes]]
name = "roomy"
listener = "ingress"
path = "/roomy"
upstream = "app"
[[routes.rate_limit]]
name = "roomy"
rate = "100000/s"
key = "route"
store = "redis"
`
}

export const redisErrors = (gateway: Gateway) => gateway.stderr.filter((line) => line.includes('redis failed'))

/** Sends n requests to each gateway at once, each on its own connection. */
export async function everyoneAtOnce(gateways: Gateway[], path: string, n: number, headers: Record<string, string> = {}): Promise<Reply[]> {
  return Promise.all(gateways.flatMap((gateway) => Array.from({ length: n }, () => request(`${gateway.listeners.ingress}${path}`, { headers }))))
}

// Three processes per target: the binary and Node (the bundle) always; Bun and Deno when PILLION_TARGETS asks.
export const heavyTargets = (): Target[] => {
  const asked = process.env.PILLION_TARGETS !== undefined
  return targets().filter((target) => asked || target.name === 'binary' || target.name === 'node')
}

/** Requests one after another from a few workers until stopped; every answer kept with how long it took. */
export function steadyLoad(gateway: Gateway, workers: number) {
  const replies: Array<{ reply: Reply; ms: number; at: number }> = []
  const failures: unknown[] = []
  const watchers: Array<{ test: (reply: Reply) => boolean; since: number; seen: (at: number) => void }> = []
  let running = true
  const worker = async () => {
    while (running) {
      const sent = performance.now()
      try {
        const reply = await request(`${gateway.listeners.ingress}/roomy`)
        const at = performance.now()
        replies.push({ reply, ms: at - sent, at })
        for (const watcher of [...watchers]) {
          // A request sent before the wait began may carry an answer from before the awaited change.
          if (sent >= watcher.since && watcher.test(reply)) {
            watchers.splice(watchers.indexOf(watcher), 1)
            watcher.seen(at)
          }
        }
      } catch (error) {
        failures.push(error)
      }
      // A bound, so a condition that never comes fails the test instead of running forever.
      if (replies.length + failures.length > 50_000) running = false
    }
  }
  const done = Promise.all(Array.from({ length: workers }, worker))
  return {
    replies,
    failures,
    /** Resolves, with when, at the first answer to a request sent from now on that passes the test. */
    until(test: (reply: Reply) => boolean): Promise<number> {
      const seen = deferred<number>()
      watchers.push({ test, since: performance.now(), seen: seen.resolve })
      return Promise.race([seen.promise, done.then(() => assert.fail('load ended before the awaited answer'))])
    },
    async stop() {
      running = false
      await done
    },
  }
}

export const counted = (reply: Reply) => reply.status === 200 && typeof reply.headers.ratelimit === 'string'

