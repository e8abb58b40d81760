import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { deferred } from './harness.ts'

/** A redis-server of the test's own on a given port, to stop, freeze and restart (never the shared one). */
export class OwnRedis {
  process: ChildProcess | undefined
  constructor(readonly port: number) {}

  async start(): Promise<void> {
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    this.process = child
    const ready = deferred()
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (/Ready to accept connections/.test(line)) ready.resolve()
    })
    const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`redis-server exited (${code})`))))
    await Promise.race([ready.promise, exited])
  }

  async stop(): Promise<void> {
    const child = this.process
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    child.kill('SIGCONT')
    child.kill('SIGTERM')
    await exited
  }

  freeze(): void {
    this.process!.kill('SIGSTOP')
  }

  thaw(): void {
    this.process!.kill('SIGCONT')
  }
}
