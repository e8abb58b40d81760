import type { WorkerBinding } from './start.ts'
import type { Runtime, SignalName, WorkerProcess } from '../core/host.ts'

/**
 * `pillion run --workers N`: one supervisor process starts N workers, copies of this program with the
 * same arguments, which all serve the same listeners (SO_REUSEPORT on Bun and Deno, node:cluster on
 * Node). The supervisor serves nothing itself: it relays the workers' stdout a whole line at a time,
 * forwards signals, restarts a worker that dies (a bounded number of times), and exits when they do.
 *
 * Worker 0 starts first and alone: a policy that cannot start fails once, and the ports it was given
 * for listeners at port 0 are handed to the others, so every worker binds the same ones. Only worker 0
 * binds the admin listener and the probes listener.
 */

/** Marks a worker and its index; set by the supervisor, never by hand. */
export const WORKER_INDEX_ENV = 'PILLION_WORKER_INDEX'
/** The ports worker 0 bound, as JSON: `{"listeners":{"ingress":43121},"admin":9901,"probes":9902}`. */
export const WORKER_PORTS_ENV = 'PILLION_WORKER_PORTS'
/** `PILLION_WORKERS=N` is `--workers N`. */
export const WORKERS_ENV = 'PILLION_WORKERS'

export interface WorkerRole {
  index: number
  binding: WorkerBinding
}

/** This process's part when a supervisor started it, from the environment it was given. */
export function workerRole(runtime: Pick<Runtime, 'env' | 'workers'>): WorkerRole | undefined {
  const index = runtime.env(WORKER_INDEX_ENV)
  if (index === undefined || !/^\d+$/.test(index)) return undefined
  const pinned = runtime.env(WORKER_PORTS_ENV)
  const ports: WorkerBinding['ports'] = pinned === undefined || pinned === '' ? { listeners: {} } : JSON.parse(pinned)
  return { index: Number(index), binding: { reusePort: runtime.workers.sharing === 'reuse-port', admin: index === '0', ports } }
}

/** What `gateway.ts` prints as it binds, and `cli.ts` once it is ready; the supervisor reads worker 0's. */
const READY = /^pillion: (.*) ready in \d+ms/
const LISTENER = /^pillion: listener (\S+) \(\w+\) on \S+:(\d+)$/
const ADMIN = /^pillion: admin on \S+:(\d+)$/
const PROBES = /^pillion: probes on \S+:(\d+)$/
const OWN_LINE = /^pillion: /gm

export interface SuperviseOptions {
  count: number
  /** The workers' arguments: this process's, without --workers. */
  args: string[]
  /** A worker that exits more than `max` times within `withinMs` stops everything (exit 1). */
  restarts?: { max: number; withinMs: number }
  /** Runs a restart after its back-off; setTimeout unless a test wants it at once. */
  schedule?: (run: () => void, delayMs: number) => void
}

type SupervisorRuntime = Pick<Runtime, 'name' | 'version' | 'onSignal' | 'writeOut' | 'writeErr' | 'workers'>

interface Slot {
  index: number
  process: WorkerProcess | undefined
  /** Set once the slot's first worker is ready: an exit from then on, ready or not, is a crash to restart. */
  serving: boolean
}

export async function supervise(runtime: SupervisorRuntime, options: SuperviseOptions): Promise<number> {
  const host = runtime.workers
  const { max, withinMs } = options.restarts ?? { max: 5, withinMs: 60_000 }
  const schedule = options.schedule ?? ((run, delayMs) => void setTimeout(run, delayMs))
  const slots: Slot[] = Array.from({ length: options.count }, (_, index) => ({ index, process: undefined, serving: false }))
  const exits: number[] = []
  const ports: WorkerBinding['ports'] = { listeners: {} }
  let service = ''
  let stopping = false
  let exitCode = 0
  let finish!: (code: number) => void
  const finished = new Promise<number>((resolve) => (finish = resolve))

  /** Starts the slot's worker; resolves true once it is ready, false if it exited first. */
  function launch(slot: Slot, announceBindings: boolean): Promise<boolean> {
    const env: Record<string, string> = { [WORKER_INDEX_ENV]: String(slot.index) }
    // Under cluster, port 0 resolves once in the primary; pinning it would ask for a second socket.
    if (host.sharing === 'reuse-port') env[WORKER_PORTS_ENV] = JSON.stringify(ports)
    const worker = host.start(options.args, env)
    slot.process = worker
    let ready = false
    let tail = ''
    return new Promise<boolean>((resolve) => {
      worker.onOutput((text) => {
        const end = text.lastIndexOf('\n')
        if (end === -1) {
          tail += text
          return
        }
        const lines = tail + text.slice(0, end)
        tail = text.slice(end + 1)
        if (ready) {
          runtime.writeOut(lines.replace(OWN_LINE, `pillion: worker ${slot.index}: `))
          return
        }
        for (const line of lines.split('\n')) {
          if (ready) runtime.writeOut(line.replace(OWN_LINE, `pillion: worker ${slot.index}: `))
          else if (READY.test(line)) {
            ready = slot.serving = true
            service = READY.exec(line)![1]!
            runtime.writeOut(`pillion: worker ${slot.index} (pid ${worker.pid}) ready`)
            resolve(true)
          } else if (LISTENER.test(line) || ADMIN.test(line) || PROBES.test(line)) {
            const listener = LISTENER.exec(line)
            const probes = PROBES.exec(line)
            const port = Number(listener ? listener[2] : probes ? probes[1] : ADMIN.exec(line)![1])
            const known = listener ? ports.listeners[listener[1]!] : probes ? ports.probes : ports.admin
            // Said once, by worker 0; again only if a restart moved it (port 0 under cluster).
            if (!announceBindings && known === port) continue
            runtime.writeOut(line)
            if (listener) ports.listeners[listener[1]!] = port
            else if (probes) ports.probes = port
            else ports.admin = port
          } else runtime.writeOut(line.replace(OWN_LINE, `pillion: worker ${slot.index}: `))
        }
      })
      void worker.exited.then((code) => {
        if (tail !== '') runtime.writeOut(tail)
        slot.process = undefined
        resolve(false)
        exited(slot, worker, code)
      })
    })
  }

  function exited(slot: Slot, worker: WorkerProcess, code: number): void {
    if (stopping) {
      if (code !== 0 && exitCode === 0) exitCode = code
      if (slots.every((s) => s.process === undefined)) finish(exitCode)
      return
    }
    if (!slot.serving) return // the start-up sequence below decides
    const now = performance.now()
    while (exits.length > 0 && exits[0]! < now - withinMs) exits.shift()
    exits.push(now)
    if (exits.length > max) {
      runtime.writeErr(`pillion: worker ${slot.index} (pid ${worker.pid}) exited with code ${code}; ${exits.length} exits within ${withinMs / 1000}s, giving up`)
      stop(1)
      return
    }
    const delayMs = exits.length === 1 ? 0 : Math.min(250 * 2 ** (exits.length - 2), 4000)
    runtime.writeErr(`pillion: worker ${slot.index} (pid ${worker.pid}) exited with code ${code}; restarting${delayMs > 0 ? ` in ${delayMs}ms` : ''}`)
    // A restarted worker that exits before it is ready counts as one more exit.
    schedule(() => {
      if (!stopping) void launch(slot, false)
    }, delayMs)
  }

  function signalAll(signal: SignalName): void {
    for (const slot of slots) slot.process?.kill(signal)
  }

  function stop(code: number): void {
    if (code !== 0 && exitCode === 0) exitCode = code
    if (stopping) return
    stopping = true
    if (slots.every((s) => s.process === undefined)) finish(exitCode)
    else signalAll('SIGTERM')
  }

  runtime.onSignal('SIGTERM', () => stop(0))
  runtime.onSignal('SIGINT', () => stop(0))
  runtime.onSignal('SIGHUP', () => signalAll('SIGHUP'))

  const unavailable = host.unavailable()
  if (unavailable !== undefined) {
    runtime.writeErr(`pillion run: ${unavailable}`)
    return 2
  }
  if (!(await launch(slots[0]!, true))) {
    if (stopping) return finished // a signal came first
    runtime.writeErr('pillion: worker 0 exited before it was ready; not starting the others')
    stop(1)
    return finished
  }
  const started = await Promise.all(slots.slice(1).map((slot) => launch(slot, false)))
  if (stopping) return finished
  if (started.includes(false)) {
    runtime.writeErr(`pillion: worker ${started.indexOf(false) + 1} exited before it was ready; stopping`)
    stop(1)
    return finished
  }
  runtime.writeOut(`pillion: ${service} ready in ${Math.round(performance.now())}ms (${runtime.name} ${runtime.version}, ${options.count} workers)`)
  return finished
}
