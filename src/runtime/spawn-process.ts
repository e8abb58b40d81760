import { spawn } from 'node:child_process'
import { constants } from 'node:os'
import type { ChildApp } from '../core/host.ts'

/** `pillion run -- CMD`: the app through node:child_process (Node, Bun and Bun's compiled binary), sharing our stdio. */
export function spawnChild(command: string, args: string[], options: { env?: Record<string, string> } = {}): ChildApp {
  const child = spawn(command, args, { env: { ...process.env, ...options.env }, stdio: 'inherit' })
  const exited = new Promise<number>((resolve, reject) => {
    child.once('exit', (code, signal) => resolve(code ?? 128 + (signal === null ? 0 : (constants.signals[signal] ?? 0))))
    // ENOENT, EACCES: it never ran ('exit' does not follow).
    child.once('error', reject)
  })
  return {
    pid: child.pid ?? 0,
    exited,
    kill(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
    },
  }
}
