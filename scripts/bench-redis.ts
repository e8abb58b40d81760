// `npm run bench:redis [-- REQUESTS]`: what a store = "redis" limit costs per request on each [redis]
// form: one Redis, a Cluster of three masters, a master found through Sentinel. The servers are
// started here (redis-server 7 on 127.0.0.1, nothing saved) and stopped at the end. Each form runs the
// store the gateway uses (src/runtime/redis.ts) one request at a time (latency) and 64 at a time
// (throughput), and counts on the servers how many commands each request sent.
//
//   node --import tsx scripts/bench-redis.ts [REQUESTS]     (default 20000 per form)
import { createRedisStore } from '../src/runtime/redis.ts'
import type { RedisSettings } from '../src/policies/rate-limit/redis-config.ts'
import { RedisProcess, startRedisCluster, startSentinelGroup } from '../test/e2e/redis-servers.ts'
import { closedPort, tempDir } from '../test/e2e/harness.ts'

const REQUESTS = Number(process.argv[2] ?? 20_000)
const CONCURRENCY = 64
const bucket = { kind: 'token_bucket', ratePerSecond: 1e9, burst: 1e9 } as const

const single = new RedisProcess(await closedPort(), [], tempDir())
single.args.push('--port', String(single.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no')
await single.start()
const cluster = await startRedisCluster(3)
const sentinel = await startSentinelGroup('bench')

const forms: Array<{ name: string; settings: RedisSettings; servers: RedisProcess[] }> = [
  { name: 'url (one Redis)', settings: { url: `redis://127.0.0.1:${single.port}`, onError: 'deny', timeoutMs: 1000 }, servers: [single] },
  { name: 'cluster (3 masters)', settings: { cluster: cluster.seeds, onError: 'deny', timeoutMs: 1000 }, servers: cluster.nodes },
  {
    name: 'sentinels (master + replica)',
    settings: { sentinels: [`127.0.0.1:${sentinel.sentinel.port}`], masterName: 'bench', onError: 'deny', timeoutMs: 1000 },
    servers: [sentinel.master],
  },
]

/**
 * Commands the clients sent, as the servers count them (INFO commandstats): everything but INFO
 * itself and the calls a script makes inside Redis (TIME, HMGET, HSET, PEXPIRE), which cost no trip.
 */
const INSIDE_SCRIPTS = new Set(['info', 'time', 'hmget', 'hset', 'pexpire'])
async function commandsRun(servers: RedisProcess[]): Promise<number> {
  let total = 0
  for (const server of servers) {
    const stats = String(await server.command('INFO', 'commandstats'))
    for (const [, name, calls] of stats.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) if (!INSIDE_SCRIPTS.has(name!)) total += Number(calls)
  }
  return total
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!
console.log(`Redis cost per request: ${REQUESTS} requests per form, node ${process.version}, redis-server on 127.0.0.1`)
console.log('| [redis] | p50 µs (one at a time) | p99 µs | takes/s (64 at a time) | round trips per request |')
console.log('|---|---:|---:|---:|---:|')
try {
  for (const form of forms) {
    const store = createRedisStore(form.settings, () => {})
    // Warm: the connection, the script loaded by EVALSHA's fallback, the cluster's slot map.
    for (let i = 0; i < 200; i++) await store.take(`pillion:{bench:${i % 16}}:k`, bucket)
    const before = await commandsRun(form.servers)
    const latencies: number[] = []
    for (let i = 0; i < REQUESTS; i++) {
      const started = performance.now()
      await store.take(`pillion:{bench:${i % 16}}:k`, bucket)
      latencies.push((performance.now() - started) * 1000)
    }
    const commands = ((await commandsRun(form.servers)) - before) / REQUESTS
    let next = 0
    const started = performance.now()
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < REQUESTS) await store.take(`pillion:{bench:${next++ % 16}}:k`, bucket)
      }),
    )
    const perSecond = REQUESTS / ((performance.now() - started) / 1000)
    latencies.sort((a, b) => a - b)
    console.log(
      `| ${form.name} | ${percentile(latencies, 0.5).toFixed(0)} | ${percentile(latencies, 0.99).toFixed(0)} | ${Math.round(perSecond)} | ${commands.toFixed(2)} |`,
    )
    await store.close()
  }
} finally {
  await Promise.all([single.kill(), cluster.stop(), sentinel.stop()])
}
