// `pillion run --workers N`: a supervisor and N workers serving the same listeners.
//
// Which worker served a request is read from the kernel, not from the gateway: each request goes on
// its own kept-alive connection, and while those are open the test looks up, in /proc, which worker
// process holds the server end of each one. Nothing in the product has to mark its answers for that,
// and it proves more than a header would: the kernel (SO_REUSEPORT) or Node's cluster really spread
// the connections, and every worker that got one answered on it.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs'
import { Agent, get } from 'node:http'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { request, startGateway, startUpstream, targets, tempDir, type Gateway, type Upstream } from './harness.ts'

const CONNECTIONS = 32 // with two workers, all on one by chance: 2 × 2^-32

function policy(upstreamUrl: string): string {
  return `
[gateway]
service = "workers"
admin = "127.0.0.1:0"
shutdown_grace = "5s"

[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"

[upstreams.local]
endpoints = ["${upstreamUrl}"]

[[routes]]
listener = "ingress"
path = "/*"
upstream = "local"
`
}

function workerPids(gateway: Gateway): Map<number, number> {
  const pids = new Map<number, number>() // index -> latest pid
  for (const line of gateway.stdout) {
    const match = /^pillion: worker (\d+) \(pid (\d+)\) ready$/.exec(line)
    if (match) pids.set(Number(match[1]), Number(match[2]))
  }
  return pids
}

/** The inode of the server end of each loopback connection from `clientPort` to `serverPort`. */
function serverSocketInodes(serverPort: number): Map<number, string> {
  const byClientPort = new Map<number, string>()
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const row of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const fields = row.trim().split(/\s+/)
      if (fields.length < 10) continue
      const localPort = parseInt(fields[1]!.split(':')[1]!, 16)
      const remotePort = parseInt(fields[2]!.split(':')[1]!, 16)
      if (localPort === serverPort && fields[3] === '01') byClientPort.set(remotePort, fields[9]!) // 01: ESTABLISHED
    }
  }
  return byClientPort
}

function socketInodesOf(pid: number): Set<string> {
  const inodes = new Set<string>()
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))
      if (match) inodes.add(match[1]!)
    } catch {
      // closed while we looked
    }
  }
  return inodes
}

/**
 * Sends one request on each of `count` fresh kept-alive connections, then, with all of them still
 * open, finds which worker holds the server end of each. Returns the answers and the owners.
 */
async function spreadOver(gateway: Gateway, pids: number[], count: number): Promise<{ statuses: number[]; owners: number[] }> {
  const url = new URL(gateway.listeners.ingress!)
  const agent = new Agent({ keepAlive: true, maxSockets: count })
  try {
    const answers = await Promise.all(
      Array.from(
        { length: count },
        () =>
          new Promise<{ status: number; clientPort: number }>((resolve, reject) => {
            get(`${url.origin}/who`, { agent }, (res) => {
              const clientPort = res.socket.localPort!
              res.resume()
              res.on('end', () => resolve({ status: res.statusCode!, clientPort }))
            }).on('error', reject)
          }),
      ),
    )
    const inodes = serverSocketInodes(Number(url.port))
    const held = pids.map((pid) => ({ pid, inodes: socketInodesOf(pid) }))
    const owners = answers.map(({ clientPort }) => {
      const inode = inodes.get(clientPort)
      const owner = held.filter(({ inodes }) => inode !== undefined && inodes.has(inode))
      assert.equal(owner.length, 1, `connection from port ${clientPort} (inode ${inode}) should be held by exactly one worker`)
      return owner[0]!.pid
    })
    return { statuses: answers.map((a) => a.status), owners }
  } finally {
    agent.destroy()
  }
}

async function stdoutClosed(gateway: Gateway): Promise<void> {
  const stdout = gateway.process.stdout!
  if (!stdout.closed) await once(stdout, 'close')
}

for (const target of targets()) {
  const skip = process.platform !== 'linux' ? 'reads /proc, and SO_REUSEPORT spreads connections over processes only on Linux' : target.missing
  describe(`workers on ${target.name}`, { skip, timeout: 120_000 }, () => {
    let upstream: Upstream

    before(async () => {
      upstream = await startUpstream((_req, res) => res.end('ok'))
    })
    after(() => upstream.close())

    it('two workers accept connections on the same listener, one admin, SIGTERM stops all with exit 0', async () => {
      const gateway = await startGateway(target, policy(upstream.url), { PILLION_WORKERS: '2' })
      try {
        const pids = workerPids(gateway)
        assert.deepEqual([...pids.keys()].sort(), [0, 1], gateway.stdout.join('\n'))
        assert.equal(gateway.stdout.filter((line) => / admin on /.test(line)).length, 1)
        assert.equal((await request(`${gateway.admin}/healthz`)).status, 200)
        assert.match(gateway.stdout.find((line) => / ready in /.test(line))!, /, 2 workers\)$/)

        const { statuses, owners } = await spreadOver(gateway, [...pids.values()], CONNECTIONS)
        assert.deepEqual(statuses, Array(CONNECTIONS).fill(200))
        assert.deepEqual(new Set(owners), new Set(pids.values()), 'both workers should hold connections')

        const [code] = await Promise.all([gateway.stop('SIGTERM'), stdoutClosed(gateway)])
        assert.equal(code, 0)
        for (const pid of pids.values()) assert.throws(() => process.kill(pid, 0), /ESRCH/, `worker ${pid} still runs`)
        // Each worker's access log reached the supervisor's stdout whole: one parseable line per request.
        const logged = gateway.stdout.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as { path: string; status: number })
        assert.equal(logged.filter((entry) => entry.path === '/who' && entry.status === 200).length, CONNECTIONS)
        for (const index of [0, 1]) assert.ok(gateway.stdout.includes(`pillion: worker ${index}: stopped`), gateway.stdout.join('\n'))
      } finally {
        await gateway.stop('SIGKILL')
      }
    })

    it('restarts a worker that dies, and the new one takes connections', async () => {
      const gateway = await startGateway(target, policy(upstream.url), { PILLION_WORKERS: '2' })
      try {
        const before = workerPids(gateway)
        const killed = before.get(1)!
        process.kill(killed, 'SIGKILL')
        await gateway.waitForLine(new RegExp(`^pillion: worker 1 \\(pid ${killed}\\) exited with code 137; restarting$`), 'stderr')
        const line = await gateway.waitForLine(new RegExp(`^pillion: worker 1 \\(pid (?!${killed}\\))\\d+\\) ready$`))
        const restarted = Number(/pid (\d+)/.exec(line)![1])

        const { statuses, owners } = await spreadOver(gateway, [before.get(0)!, restarted], CONNECTIONS)
        assert.deepEqual(statuses, Array(CONNECTIONS).fill(200))
        assert.deepEqual(new Set(owners), new Set([before.get(0)!, restarted]))
        assert.equal(await gateway.stop('SIGTERM'), 0)
      } finally {
        await gateway.stop('SIGKILL')
      }
    })

    it('a policy that cannot start fails in worker 0 alone, with exit 1 (--workers as a flag)', async () => {
      const dir = tempDir()
      const file = join(dir, 'pillion.toml')
      writeFileSync(file, policy(upstream.url).replace('direction = "ingress"', 'direction = "sideways"'))
      const [command, ...args] = target.command
      const child = spawn(command!, [...args, 'run', '--workers', '2', '-c', file], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', (d) => (stdout += d))
      child.stderr.on('data', (d) => (stderr += d))
      const [code] = (await once(child, 'close')) as [number]
      assert.equal(code, 1, stdout + stderr)
      assert.match(stderr, /listeners\.ingress\.direction/)
      assert.match(stderr, /worker 0 exited before it was ready; not starting the others/)
      assert.doesNotMatch(stdout + stderr, /worker 1/)
    })
  })
}
