import { spawn, type ChildProcess } from 'node:child_process'
import { constants } from 'node:os'
import type { WorkerHost, WorkerProcess } from '../core/host.ts'

/** The supervisor's side of one worker started through node:child_process (Bun, and Node's cluster). */
export function childWorker(child: ChildProcess): WorkerProcess {
  const exited = new Promise<number>((resolve) => {
    // 'close' comes after 'exit' once stdout is drained, so no line the worker wrote is lost.
    child.once('close', (code, signal) => resolve(code ?? 128 + (signal === null ? 0 : (constants.signals[signal] ?? 0))))
    child.once('error', () => resolve(127))
  })
  child.stdout?.setEncoding('utf8')
  return {
    pid: child.pid ?? 0,
    onOutput: (listener) => void child.stdout?.on('data', listener),
    exited,
    kill: (signal) => void child.kill(signal),
  }
}

/** A worker holds the read end of a pipe from its supervisor; end of file means the supervisor is gone. */
export function stdinClosed(listener: () => void): void {
  let called = false
  const once = () => {
    if (!called) (called = true), listener()
  }
  process.stdin.on('end', once).on('close', once).on('error', once)
  process.stdin.resume()
}

/** Whether this is a `bun build --compile` executable: its script lives in Bun's embedded file system. */
function isCompiledBun(): boolean {
  const script = process.argv[1] ?? ''
  return script.startsWith('/$bunfs/') || script.startsWith('B:/~BUN/') || script.startsWith('B:\\~BUN\\')
}

/**
 * Workers as plain processes that each bind every listener with SO_REUSEPORT (Bun): the kernel spreads
 * new connections over them. A compiled binary is its own script (`process.execPath` alone starts it);
 * `bun [flags] script.ts` is started again with the same flags and script.
 */
export function reusePortProcesses(runtimeName: string): WorkerHost {
  return {
    sharing: 'reuse-port',
    unavailable: () =>
      process.platform === 'linux'
        ? undefined
        : `--workers under ${runtimeName} needs Linux, where SO_REUSEPORT spreads connections over the processes (here: ${process.platform}); use Node, or one process per core`,
    start(args, env) {
      const prefix = isCompiledBun() ? [] : [...process.execArgv, process.argv[1]!]
      const child = spawn(process.execPath, [...prefix, ...args], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'inherit'] })
      return childWorker(child)
    },
    onSupervisorGone: stdinClosed,
  }
}
