// Global rate limits on the Redis a fleet runs: a Cluster of three masters shared by three gateways,
// and a master found through Sentinel, killed under load and replaced by its replica.
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { runPillion, startGateway, startUpstream, targets, tempDir, type Gateway, type Reply, type Target, type Upstream } from './harness.ts'
import { counted, everyoneAtOnce, heavyTargets, quotaPolicy, redisErrors, steadyLoad } from './quota-helpers.ts'
import { startRedisCluster, startSentinelGroup, type RedisCluster, type RedisProcess, type SentinelGroup } from './redis-servers.ts'

for (const target of heavyTargets()) {
  describe(`one quota shared by three gateways on a Redis Cluster, on ${target.name}`, { skip: target.missing }, () => {
    let cluster: RedisCluster
    let upstream: Upstream
    let gateways: Gateway[] = []

    before(async () => {
      cluster = await startRedisCluster(3)
      upstream = await startUpstream((_req, res) => res.end('ok'))
      const redis = `cluster = ${JSON.stringify(cluster.seeds)}\non_error = "deny"\ntimeout = "2s"`
      const text = quotaPolicy(`cluster-${randomUUID().slice(0, 8)}`, upstream, redis)
      gateways = await Promise.all([0, 1, 2].map(() => startGateway(target, text)))
    })

    after(async () => {
      await Promise.all(gateways.map((gateway) => gateway.stop()))
      await upstream?.close()
      await cluster?.stop()
    })

    it('150 concurrent requests through 3 gateways admit the bucket of 40 exactly', async () => {
      const replies = await everyoneAtOnce(gateways, '/shared', 50)
      const admitted = replies.filter((reply) => reply.status === 200).length
      assert.equal(admitted + replies.filter((reply) => reply.status === 429).length, 150)
      assert.deepEqual(gateways.flatMap(redisErrors), [])
      assert.equal(admitted, 40)
    })

    it('a per-tenant quota admits exactly its 25 per tenant, whichever node holds the tenant', async () => {
      const acme = await everyoneAtOnce(gateways, '/quota', 15, { 'x-tenant': 'acme' })
      const globex = await everyoneAtOnce(gateways, '/quota', 10, { 'x-tenant': 'globex' })
      assert.deepEqual(gateways.flatMap(redisErrors), [])
      assert.equal(acme.filter((reply) => reply.status === 200).length, 25)
      assert.equal(globex.filter((reply) => reply.status === 200).length, 25)
    })

    it('one limit\'s keys share a node: both tenants\' counts sit on one of them', async () => {
      const keysPerNode = await Promise.all(cluster.nodes.map(async (node) => Number(await node.command('DBSIZE'))))
      assert.equal(keysPerNode.reduce((sum, keys) => sum + keys, 0), 3, `keys per node: ${keysPerNode}`)
      const tenants = await Promise.all(cluster.nodes.map(async (node) => ((await node.command('KEYS', '*per-tenant}:*')) as string[]).length))
      assert.deepEqual(tenants.toSorted(), [0, 0, 2])
    })

    it('the bucket\'s slot moved to another node: the gateways follow MOVED and keep its count', async () => {
      const { node: from, key } = await holderOf(cluster, '*bucket}:*')
      const slot = String(await from.command('CLUSTER', 'KEYSLOT', key))
      const to = cluster.nodes.find((node) => node !== from)!
      await moveSlot(cluster, slot, from, to)
      assert.equal((await holderOf(cluster, '*bucket}:*')).node, to)
      const replies = await everyoneAtOnce(gateways, '/shared', 5)
      assert.deepEqual(gateways.flatMap(redisErrors), [])
      // Still empty: a lost count would have started a full bucket of 40 on the new node.
      assert.deepEqual([...new Set(replies.map((reply) => reply.status))], [429])
      for (const reply of replies) assert.match(String(reply.headers.ratelimit), /^"bucket";r=0;t=\d+$/)
    })
  })
}

/** The node holding the one key that matches (KEYS answers for the node asked only). */
async function holderOf(cluster: RedisCluster, pattern: string): Promise<{ node: RedisProcess; key: string }> {
  for (const node of cluster.nodes) {
    const [key] = (await node.command('KEYS', pattern)) as string[]
    if (key !== undefined) return { node, key }
  }
  throw new Error(`no node holds ${pattern}`)
}

/** The steps of `redis-cli --cluster reshard` for one slot: mark it, move its keys, tell every node. */
async function moveSlot(cluster: RedisCluster, slot: string, from: RedisProcess, to: RedisProcess): Promise<void> {
  const [fromId, toId] = [String(await from.command('CLUSTER', 'MYID')), String(await to.command('CLUSTER', 'MYID'))]
  await to.command('CLUSTER', 'SETSLOT', slot, 'IMPORTING', fromId)
  await from.command('CLUSTER', 'SETSLOT', slot, 'MIGRATING', toId)
  const keys = (await from.command('CLUSTER', 'GETKEYSINSLOT', slot, '1000')) as string[]
  if (keys.length > 0) await from.command('MIGRATE', '127.0.0.1', String(to.port), '', '0', '5000', 'KEYS', ...keys)
  for (const node of [to, from, ...cluster.nodes.filter((node) => node !== from && node !== to)]) await node.command('CLUSTER', 'SETSLOT', slot, 'NODE', toId)
}

for (const target of targets()) {
  describe(`pillion check on the [redis] forms, on ${target.name}`, { skip: target.missing }, () => {
    it('refuses two forms at once and sentinels without master_name, naming the key; passes each form alone', async () => {
      const dir = tempDir()
      const upstream = { url: 'http://127.0.0.1:3000' }
      const check = async (redis: string) => {
        writeFileSync(join(dir, 'pillion.toml'), quotaPolicy('check', upstream, redis))
        return runPillion(target, ['check', 'pillion.toml'], dir)
      }
      const both = await check('url = "redis://127.0.0.1:6379"\ncluster = ["redis://127.0.0.1:7000"]')
      assert.equal(both.code, 1)
      assert.match(both.stderr, /pillion\.toml: redis\.cluster: set only one of url, cluster and sentinels \(url and cluster are both set\)/)
      const nameless = await check('sentinels = ["127.0.0.1:26379"]')
      assert.equal(nameless.code, 1)
      assert.match(nameless.stderr, /redis\.master_name: required key missing: sentinels need the master_name/)
      for (const redis of ['cluster = ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]', 'sentinels = ["127.0.0.1:26379"]\nmaster_name = "quotas"']) {
        const passed = await check(redis)
        assert.equal(passed.code, 0, passed.stderr)
      }
    })
  })
}

/**
 * Two gateways on one store (on_error allow and deny, timeout 200ms) under steady load; `kill` takes a
 * master away. Every request gets its on_error answer until counting resumes by itself; then a fresh
 * quota of 25 admits exactly 25. Prints the time from the kill to counting again.
 */
async function failoverUnderLoad(label: string, open: Gateway, closed: Gateway, kill: () => Promise<void>): Promise<void> {
  const allowLoad = steadyLoad(open, 3)
  const denyLoad = steadyLoad(closed, 3)
  let killedAt = 0
  let countingAgainAt: number[] = []
  try {
    await Promise.all([allowLoad.until(counted), denyLoad.until(counted)])
    killedAt = performance.now()
    await kill()
    await Promise.all([allowLoad.until((reply) => reply.status === 200 && !counted(reply)), denyLoad.until((reply) => reply.status === 429)])
    countingAgainAt = await Promise.all([allowLoad.until(counted), denyLoad.until(counted)])
  } catch (error) {
    console.log('gateway logs at the failure:', open.stderr.slice(-10), closed.stderr.slice(-10))
    throw error
  } finally {
    await Promise.all([allowLoad.stop(), denyLoad.stop()])
  }
  assert.deepEqual(allowLoad.failures, [])
  assert.deepEqual(denyLoad.failures, [])
  assert.deepEqual([...new Set(allowLoad.replies.map(({ reply }) => reply.status))], [200])
  assert.deepEqual([...new Set(denyLoad.replies.map(({ reply }) => reply.status))].sort(), [200, 429])
  const during = [...allowLoad.replies, ...denyLoad.replies].filter(({ at }) => at >= killedAt && at <= Math.max(...countingAgainAt))
  const slowest = Math.max(...during.map(({ ms }) => ms))
  // Reported, not asserted: timings belong to the docs, and this machine is shared.
  console.log(
    `[${label}] kill to counting again: ${countingAgainAt.map((at) => Math.round(at - killedAt)).join(' / ')} ms ` +
      `(allow / deny gateway); ${during.length} requests meanwhile, slowest ${Math.round(slowest)} ms with timeout = 200ms`,
  )

  // Enforced on the new master: exactly the quota for a fresh tenant, through both gateways. A client
  // may reconnect once more (Sentinel announces the switch), so a burst may meet on_error; such
  // answers are set aside and the bursts go on until 30 have been decided by Redis.
  const decided: Reply[] = []
  const tenant = { 'x-tenant': randomUUID() }
  for (let burst = 0; burst < 10 && decided.length < 30; burst++) {
    const replies = await everyoneAtOnce([open, closed], '/quota', 10, tenant)
    decided.push(...replies.filter((reply) => typeof reply.headers.ratelimit === 'string'))
  }
  assert.ok(decided.length >= 30, `only ${decided.length} answers decided by Redis`)
  assert.equal(decided.filter((reply) => reply.status === 200).length, 25)
  assert.ok(decided.filter((reply) => reply.status === 429).every((reply) => reply.json().code === 'rate_limited'))
}

/** Starts the two gateways of failoverUnderLoad on the [redis] servers given. */
async function allowAndDeny(target: Target, upstream: Upstream, servers: string): Promise<[Gateway, Gateway]> {
  const service = `failover-${randomUUID().slice(0, 8)}`
  const redis = (onError: string) => `${servers}\non_error = "${onError}"\ntimeout = "200ms"`
  return Promise.all([startGateway(target, quotaPolicy(service, upstream, redis('allow'))), startGateway(target, quotaPolicy(service, upstream, redis('deny')))])
}

for (const target of heavyTargets()) {
  describe(`Sentinel fails the master over under load, on ${target.name}`, { skip: target.missing }, () => {
    let group: SentinelGroup
    let upstream: Upstream
    let open: Gateway
    let closed: Gateway

    before(async () => {
      group = await startSentinelGroup('quotas')
      upstream = await startUpstream((_req, res) => res.end('ok'))
      ;[open, closed] = await allowAndDeny(target, upstream, `sentinels = ["127.0.0.1:${group.sentinel.port}"]\nmaster_name = "quotas"`)
    })

    after(async () => {
      await open?.stop()
      await closed?.stop()
      await upstream?.close()
      await group?.stop()
    })

    it('the master killed: on_error while Sentinel promotes the replica, then counting on the new master without a restart', async () => {
      await failoverUnderLoad(`sentinel failover on ${target.name}`, open, closed, () => group.master.kill())
      assert.equal(await group.masterAddress(), `127.0.0.1:${group.replica.port}`)
    })
  })

  describe(`a Cluster master fails over to its replica under load, on ${target.name}`, { skip: target.missing }, () => {
    let cluster: RedisCluster
    let upstream: Upstream
    let open: Gateway
    let closed: Gateway

    before(async () => {
      cluster = await startRedisCluster(3, 1)
      upstream = await startUpstream((_req, res) => res.end('ok'))
      // Only the masters as seeds: the replicas are found through the cluster, as in production.
      ;[open, closed] = await allowAndDeny(target, upstream, `cluster = ${JSON.stringify(cluster.seeds.slice(0, 3))}`)
    })

    after(async () => {
      await open?.stop()
      await closed?.stop()
      await upstream?.close()
      await cluster?.stop()
    })

    it('the master holding the limit killed: on_error until its replica takes over, then counting again', async () => {
      await failoverUnderLoad(`cluster failover on ${target.name}`, open, closed, async () => {
        const masters = []
        for (const node of cluster.nodes) if (/role:master/.test(String(await node.command('INFO', 'replication')))) masters.push(node)
        const { node } = await holderOf({ ...cluster, nodes: masters }, '*roomy}:*')
        await node.kill()
      })
    })
  })
}
