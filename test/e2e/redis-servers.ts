// Redis deployments of a test's own: a Cluster of three masters and a master, a replica and a
// Sentinel. Every server keeps its files in one temp dir, saves nothing, and is stopped at the end.
import { spawn, type ChildProcess } from 'node:child_process'
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { Redis } from 'ioredis'
import { closedPort, deferred, tempDir, until } from './harness.ts'

/** One redis-server (or Sentinel) process, started with its arguments and killed on request. */
export class RedisProcess {
  process: ChildProcess | undefined
  constructor(
    readonly port: number,
    readonly args: string[],
    readonly cwd: string,
  ) {}

  async start(): Promise<void> {
    const child = spawn('redis-server', this.args, { cwd: this.cwd, stdio: ['ignore', 'pipe', 'inherit'] })
    this.process = child
    const ready = deferred()
    const lines: string[] = []
    createInterface({ input: child.stdout! }).on('line', (line) => {
      lines.push(line)
      if (/Ready to accept connections|Sentinel ID is/.test(line)) ready.resolve()
    })
    const exited = new Promise<never>((_, reject) =>
      child.once('exit', (code) => reject(new Error(`redis-server ${this.args.join(' ')} exited (${code}):\n${lines.join('\n')}`))),
    )
    exited.catch(() => {})
    await Promise.race([ready.promise, exited])
  }

  /** SIGKILL: the server vanishes as a crashed machine's would, without closing anything politely. */
  async kill(): Promise<void> {
    const child = this.process
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    child.kill('SIGKILL')
    await exited
  }

  client(): Redis {
    return new Redis({ host: '127.0.0.1', port: this.port, lazyConnect: true, maxRetriesPerRequest: 0 })
  }

  /** One command on a connection of its own. */
  async command(...args: string[]): Promise<unknown> {
    const redis = this.client()
    try {
      await redis.connect()
      return await redis.call(args[0]!, ...args.slice(1))
    } finally {
      redis.disconnect()
    }
  }
}

const NO_DISK = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']

/**
 * Starts a server on ports that were free a moment ago; if another test took one meanwhile
 * ("Address already in use"), again on others.
 */
async function startOnFreePorts(cwd: string, ports: number, args: (ports: number[]) => string[]): Promise<RedisProcess> {
  for (let attempt = 1; ; attempt++) {
    const chosen: number[] = []
    for (let i = 0; i < ports; i++) chosen.push(await closedPort())
    const server = new RedisProcess(chosen[0]!, args(chosen), cwd)
    try {
      await server.start()
      return server
    } catch (error) {
      if (attempt === 5 || !/Address already in use/.test((error as Error).message)) throw error
    }
  }
}

export interface RedisCluster {
  nodes: RedisProcess[]
  /** Seed URLs for [redis] cluster. */
  seeds: string[]
  stop(): Promise<void>
}

/**
 * Masters (and `replicas` replicas of each), joined by `redis-cli --cluster create`; resolves once
 * each node says cluster_state:ok and every replica is in sync. A master silent for 1 s
 * (cluster-node-timeout) is failed over to its replica.
 */
export async function startRedisCluster(masters = 3, replicas = 0): Promise<RedisCluster> {
  const dir = tempDir()
  const nodes: RedisProcess[] = []
  const stop = async () => {
    await Promise.all(nodes.map((node) => node.kill()))
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    for (let i = 0; i < masters * (1 + replicas); i++) {
      // cluster-port is given so the bus port is free too (port + 10000 may not be, or may not exist).
      const node = await startOnFreePorts(dir, 2, ([port, busPort]) => [
        '--port', String(port), '--cluster-enabled', 'yes', '--cluster-port', String(busPort), '--cluster-config-file', `nodes-${port}.conf`,
        '--cluster-node-timeout', '1000', ...NO_DISK,
      ])
      nodes.push(node)
    }
    await run('redis-cli', ['--cluster', 'create', ...nodes.map((node) => `127.0.0.1:${node.port}`), '--cluster-replicas', String(replicas), '--cluster-yes'])
    for (const node of nodes) {
      await until(`cluster_state:ok on ${node.port}`, async () => (/cluster_state:ok/.test(String(await node.command('CLUSTER', 'INFO'))) ? true : undefined), 30_000)
      await until(
        `${node.port} in sync if a replica`,
        async () => {
          const replication = String(await node.command('INFO', 'replication'))
          return /role:master/.test(replication) || /master_link_status:up/.test(replication) ? true : undefined
        },
        30_000,
      )
    }
    return { nodes, seeds: nodes.map((node) => `redis://127.0.0.1:${node.port}`), stop }
  } catch (error) {
    await stop()
    throw error
  }
}

export interface SentinelGroup {
  master: RedisProcess
  replica: RedisProcess
  sentinel: RedisProcess
  masterName: string
  /** The address Sentinel gives for the master now, "127.0.0.1:port". */
  masterAddress(): Promise<string>
  stop(): Promise<void>
}

/**
 * A master, its replica and one Sentinel (quorum 1) that calls the master down after 1 s of silence
 * and fails over at once. Resolves when the replica is in sync and Sentinel knows both.
 */
export async function startSentinelGroup(masterName = 'quotas'): Promise<SentinelGroup> {
  const dir = tempDir()
  const master = await startOnFreePorts(dir, 1, ([port]) => ['--port', String(port), ...NO_DISK])
  const replica = await startOnFreePorts(dir, 1, ([port]) => ['--port', String(port), '--replicaof', '127.0.0.1', String(master.port), ...NO_DISK]).catch(
    async (error: unknown) => {
      await master.kill()
      throw error
    },
  )
  const config = join(dir, 'sentinel.conf')
  const sentinelConfig = (port: number) =>
    [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor ${masterName} 127.0.0.1 ${master.port} 1`,
      `sentinel down-after-milliseconds ${masterName} 1000`,
      `sentinel failover-timeout ${masterName} 5000`,
      `sentinel parallel-syncs ${masterName} 1`,
      '',
    ].join('\n')
  const group = {
    master,
    replica,
    sentinel: undefined as unknown as RedisProcess,
    masterName,
    async masterAddress() {
      const [host, port] = (await group.sentinel.command('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName)) as [string, string]
      return `${host}:${port}`
    },
    async stop() {
      await Promise.all([group.sentinel?.kill(), replica.kill(), master.kill()])
      rmSync(dir, { recursive: true, force: true })
    },
  }
  try {
    await until('the replica in sync', async () => (/master_link_status:up/.test(String(await replica.command('INFO', 'replication'))) ? true : undefined), 30_000)
    // Sentinel rewrites its config file, so each attempt writes it afresh with its own port.
    group.sentinel = await startOnFreePorts(dir, 1, ([port]) => {
      writeFileSync(config, sentinelConfig(port!))
      return [config, '--sentinel']
    })
    const sentinel = group.sentinel
    await until(
      'Sentinel to know the replica',
      async () => {
        const replicas = (await sentinel.command('SENTINEL', 'REPLICAS', masterName)) as string[][]
        return replicas.some((fields) => fields.includes(String(replica.port)) && fields[fields.indexOf('flags') + 1] === 'slave') ? true : undefined
      },
      30_000,
    )
    return group
  } catch (error) {
    await group.stop()
    throw error
  }
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk))
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk))
    child.once('error', reject)
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${command} ${args.join(' ')} exited ${code}:\n${output}`))))
  })
}
