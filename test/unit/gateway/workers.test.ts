// The supervisor of `pillion run --workers N` against fake worker processes: what it prints, which
// ports it pins, how it restarts, and how it stops. The real processes are in test/e2e/workers.test.ts.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { SignalName, WorkerHost, WorkerProcess } from '../../../src/core/host.ts'
import { supervise, workerRole, WORKER_INDEX_ENV, WORKER_PORTS_ENV } from '../../../src/gateway/workers.ts'

class FakeWorker implements WorkerProcess {
  readonly kills: string[] = []
  readonly exited: Promise<number>
  #output: Array<(text: string) => void> = []
  #exit!: (code: number) => void
  constructor(
    readonly pid: number,
    readonly env: Record<string, string>,
  ) {
    this.exited = new Promise((resolve) => (this.#exit = resolve))
  }
  onOutput(listener: (text: string) => void): void {
    this.#output.push(listener)
  }
  write(text: string): void {
    for (const listener of this.#output) listener(text)
  }
  exit(code: number): void {
    this.#exit(code)
  }
  kill(signal: SignalName | 'SIGKILL'): void {
    this.kills.push(signal)
    if (signal === 'SIGTERM') this.exit(0)
  }
}

/** A host whose workers do what `behave` tells them once started (after the supervisor has subscribed). */
function fakeHost(behave: (worker: FakeWorker, started: number) => void, sharing: WorkerHost['sharing'] = 'reuse-port') {
  const started: FakeWorker[] = []
  const host: WorkerHost = {
    sharing,
    unavailable: () => undefined,
    start(_args, env) {
      const worker = new FakeWorker(1000 + started.length, env)
      started.push(worker)
      queueMicrotask(() => behave(worker, started.length - 1))
      return worker
    },
    onSupervisorGone() {},
  }
  return { host, started }
}

/** Prints what a worker prints as it starts: the pinned port if it was given one, else a port of its own. */
function ready(worker: FakeWorker): void {
  const pinned = worker.env[WORKER_PORTS_ENV] === undefined ? undefined : JSON.parse(worker.env[WORKER_PORTS_ENV]).listeners.ingress
  const port = pinned ?? 4000 + Number(worker.env[WORKER_INDEX_ENV])
  // Split mid-line on purpose: the supervisor must join the pieces. Only worker 0 binds the admin listener.
  worker.write(`pillion: listener ingress (ingress) on http://127.0.0`)
  worker.write(`.1:${port}\n${worker.env[WORKER_INDEX_ENV] === '0' ? 'pillion: admin on http://127.0.0.1:9901\n' : ''}pillion: svc ready in 12ms (bun 1.4.5)\n`)
}

function fakeRuntime(host: WorkerHost) {
  const out: string[] = []
  const err: string[] = []
  const signals = new Map<string, () => void>()
  const runtime = {
    name: 'bun' as const,
    version: '1.4.5',
    workers: host,
    writeOut: (line: string) => void out.push(...line.split('\n')),
    writeErr: (line: string) => void err.push(line),
    onSignal: (signal: SignalName, listener: () => void) => void signals.set(signal, listener),
  }
  return { runtime, out, err, signal: (name: SignalName) => signals.get(name)!() }
}

/** Lets the supervisor's promise callbacks run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve))

describe('workers supervisor', () => {
  it('starts worker 0 first, pins its ports for the others, prints its listeners once and one line per worker', async () => {
    const { host, started } = fakeHost(ready)
    const { runtime, out, signal } = fakeRuntime(host)
    const done = supervise(runtime, { count: 3, args: ['run', '-c', 'x.toml'] })
    await settle()
    assert.equal(started.length, 3)
    assert.deepEqual(JSON.parse(started[0]!.env[WORKER_PORTS_ENV]!), { listeners: {} })
    for (const worker of started.slice(1)) assert.deepEqual(JSON.parse(worker.env[WORKER_PORTS_ENV]!), { listeners: { ingress: 4000 }, admin: 9901 })
    assert.deepEqual(out, [
      'pillion: listener ingress (ingress) on http://127.0.0.1:4000',
      'pillion: admin on http://127.0.0.1:9901',
      'pillion: worker 0 (pid 1000) ready',
      'pillion: worker 1 (pid 1001) ready',
      'pillion: worker 2 (pid 1002) ready',
      out.at(-1)!,
    ])
    assert.match(out.at(-1)!, /^pillion: svc ready in \d+ms \(bun 1\.4\.5, 3 workers\)$/)
    signal('SIGTERM')
    assert.equal(await done, 0)
  })

  it("prints worker 0's probes listener once and keeps its port for a restarted worker 0", async () => {
    const { host, started } = fakeHost((worker) => {
      worker.write('pillion: listener ingress (ingress) on http://127.0.0.1:4000\n')
      if (worker.env[WORKER_INDEX_ENV] === '0') worker.write('pillion: admin on http://127.0.0.1:9901\npillion: probes on http://0.0.0.0:9902\n')
      worker.write('pillion: svc ready in 12ms (bun 1.4.5)\n')
    })
    const { runtime, out, signal } = fakeRuntime(host)
    const done = supervise(runtime, { count: 2, args: ['run'] })
    await settle()
    assert.deepEqual(JSON.parse(started[1]!.env[WORKER_PORTS_ENV]!), { listeners: { ingress: 4000 }, admin: 9901, probes: 9902 })
    assert.deepEqual(out.filter((line) => line.includes(' on http')), [
      'pillion: listener ingress (ingress) on http://127.0.0.1:4000',
      'pillion: admin on http://127.0.0.1:9901',
      'pillion: probes on http://0.0.0.0:9902',
    ])
    signal('SIGTERM')
    assert.equal(await done, 0)
  })

  it('pins no ports under cluster, where port 0 resolves once in the primary; says so if a restart moved one', async () => {
    // Under cluster every worker gets the primary's port; a restarted worker 0 may get a new admin port.
    const { host, started } = fakeHost((worker, n) => {
      worker.write('pillion: listener ingress (ingress) on http://127.0.0.1:4000\n')
      if (worker.env[WORKER_INDEX_ENV] === '0') worker.write(`pillion: admin on http://127.0.0.1:${9901 + n}\n`)
      worker.write('pillion: svc ready in 12ms (node 20)\n')
    }, 'cluster')
    const { runtime, out, signal } = fakeRuntime(host)
    const done = supervise(runtime, { count: 2, args: ['run'], schedule: (run) => queueMicrotask(run) })
    await settle()
    assert.equal(started[1]!.env[WORKER_PORTS_ENV], undefined)
    assert.equal(out.filter((line) => line.includes(' on http')).length, 2)
    out.length = 0
    started[0]!.exit(1)
    await settle()
    assert.deepEqual(out, ['pillion: admin on http://127.0.0.1:9903', 'pillion: worker 0 (pid 1002) ready'])
    signal('SIGINT')
    assert.equal(await done, 0)
  })

  it("relays a worker's output whole lines at a time, its own lines marked with the worker", async () => {
    const { host, started } = fakeHost(ready)
    const { runtime, out, signal } = fakeRuntime(host)
    const done = supervise(runtime, { count: 2, args: ['run'] })
    await settle()
    out.length = 0
    started[1]!.write('{"status":200,')
    assert.deepEqual(out, [])
    started[1]!.write('"path":"/a"}\n{"status":404}\npillion: shutting down\n')
    assert.deepEqual(out, ['{"status":200,"path":"/a"}', '{"status":404}', 'pillion: worker 1: shutting down'])
    signal('SIGTERM')
    await done
  })

  it('forwards SIGHUP to every worker, and SIGTERM; exits with the first non-zero code', async () => {
    const { host, started } = fakeHost(ready)
    const { runtime, signal } = fakeRuntime(host)
    const done = supervise(runtime, { count: 2, args: ['run'] })
    await settle()
    signal('SIGHUP')
    assert.deepEqual(started.map((w) => w.kills), [['SIGHUP'], ['SIGHUP']])
    started[1]!.kill = (sig) => void started[1]!.kills.push(sig) // this one fails to drain
    signal('SIGTERM')
    await settle()
    assert.deepEqual(started.map((w) => w.kills), [['SIGHUP', 'SIGTERM'], ['SIGHUP', 'SIGTERM']])
    started[1]!.exit(3)
    assert.equal(await done, 3)
  })

  it('restarts a worker that dies, and gives up after too many exits, stopping the rest (exit 1)', async () => {
    // Worker 1 dies right after it is ready, every time.
    const { host, started } = fakeHost((worker) => {
      ready(worker)
      if (worker.env[WORKER_INDEX_ENV] === '1') worker.exit(1)
    })
    const { runtime, err } = fakeRuntime(host)
    const delays: number[] = []
    const done = supervise(runtime, { count: 2, args: ['run'], restarts: { max: 3, withinMs: 60_000 }, schedule: (run, ms) => (delays.push(ms), queueMicrotask(run)) })
    assert.equal(await done, 1)
    assert.equal(started.length, 1 + 4) // worker 0, then worker 1 and its 3 restarts
    assert.deepEqual(delays, [0, 250, 500])
    assert.match(err.at(-1)!, /^pillion: worker 1 \(pid 1004\) exited with code 1; 4 exits within 60s, giving up$/)
    assert.deepEqual(started[0]!.kills, ['SIGTERM'])
  })

  it('a worker 0 that cannot start stops everything before the others start', async () => {
    const { host, started } = fakeHost((worker) => worker.exit(1))
    const { runtime, err } = fakeRuntime(host)
    assert.equal(await supervise(runtime, { count: 4, args: ['run'] }), 1)
    assert.equal(started.length, 1)
    assert.match(err.join('\n'), /worker 0 exited before it was ready/)
  })

  it('refuses to start where workers cannot run, saying why', async () => {
    const { host, started } = fakeHost(ready)
    const { runtime, err } = fakeRuntime({ ...host, unavailable: () => 'not on this platform' })
    assert.equal(await supervise(runtime, { count: 2, args: ['run'] }), 2)
    assert.equal(started.length, 0)
    assert.deepEqual(err, ['pillion run: not on this platform'])
  })

  it('a worker reads its index and pinned ports from the environment; only worker 0 binds the admin listener', () => {
    const env = (vars: Record<string, string>) => ({ env: (name: string) => vars[name], workers: { sharing: 'reuse-port' } as WorkerHost })
    assert.equal(workerRole(env({})), undefined)
    assert.deepEqual(workerRole(env({ [WORKER_INDEX_ENV]: '0' })), { index: 0, binding: { reusePort: true, admin: true, ports: { listeners: {} } } })
    assert.deepEqual(workerRole(env({ [WORKER_INDEX_ENV]: '2', [WORKER_PORTS_ENV]: '{"listeners":{"in":81},"admin":9}' })), {
      index: 2,
      binding: { reusePort: true, admin: false, ports: { listeners: { in: 81 }, admin: 9 } },
    })
  })
})
