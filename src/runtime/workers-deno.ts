import type { WorkerHost, WorkerProcess } from '../core/host.ts'

declare const Deno: {
  args: string[]
  build: { os: string }
  execPath(): string
  readTextFileSync(path: string): string
  stdin: { readable: ReadableStream<Uint8Array> }
  permissions: { querySync(descriptor: { name: 'run' }): { state: string } }
  Command: new (
    command: string,
    options: { args: string[]; env: Record<string, string>; stdin: 'piped'; stdout: 'piped'; stderr: 'inherit' },
  ) => {
    spawn(): {
      pid: number
      status: Promise<{ code: number }>
      stdout: ReadableStream<Uint8Array>
      stdin: WritableStream<Uint8Array>
      kill(signal: string): void
    }
  }
}

/**
 * The command line this process was started with, as run again for a worker: the same deno flags and
 * script, plus `--unstable-net`, which `Deno.serve({ reusePort })` needs in Deno 2.x. Deno keeps its
 * own flags from `Deno.args`, so they are read from /proc (reusePort balancing is Linux-only anyway).
 */
function workerCommandPrefix(): string[] {
  const cmdline = Deno.readTextFileSync('/proc/self/cmdline').split('\0').slice(0, -1)
  const prefix = cmdline.slice(1, cmdline.length - Deno.args.length)
  if (prefix.length === 0) return [] // a `deno compile` executable: its flags are compiled in
  const script = prefix.pop()!
  const unstable = prefix.includes('--unstable-net') || prefix.includes('--unstable')
  return [...prefix, ...(unstable ? [] : ['--unstable-net']), script]
}

async function pump(stream: ReadableStream<Uint8Array>, listener: (text: string) => void): Promise<void> {
  const decoder = new TextDecoder()
  for await (const bytes of stream) listener(decoder.decode(bytes, { stream: true }))
}

export function denoWorkers(): WorkerHost {
  return {
    sharing: 'reuse-port',
    unavailable() {
      if (Deno.build.os !== 'linux') {
        return `--workers under Deno needs Linux, where SO_REUSEPORT spreads connections over the processes (here: ${Deno.build.os}); use Node, or one process per core`
      }
      try {
        workerCommandPrefix()
        if (Deno.permissions.querySync({ name: 'run' }).state !== 'granted') return '--workers under Deno needs --allow-run (or -A) to start the workers'
      } catch (error) {
        return `--workers under Deno cannot tell how this process was started: ${(error as Error).message}`
      }
      return undefined
    },
    start(args, env) {
      const child = new Deno.Command(Deno.execPath(), { args: [...workerCommandPrefix(), ...args], env, stdin: 'piped', stdout: 'piped', stderr: 'inherit' }).spawn()
      const listeners: Array<(text: string) => void> = []
      const drained = pump(child.stdout, (text) => listeners.forEach((listener) => listener(text))).catch(() => {})
      const worker: WorkerProcess = {
        pid: child.pid,
        onOutput: (listener) => void listeners.push(listener),
        exited: Promise.all([child.status, drained]).then(([status]) => status.code),
        kill(signal) {
          try {
            child.kill(signal)
          } catch {
            // already gone
          }
        },
      }
      return worker
    },
    onSupervisorGone(listener) {
      void (async () => {
        for await (const _ of Deno.stdin.readable);
      })()
        .catch(() => {})
        .then(listener)
    },
  }
}
