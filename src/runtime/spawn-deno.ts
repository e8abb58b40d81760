import type { ChildApp } from '../core/host.ts'

declare const Deno: {
  Command: new (
    command: string,
    options: { args: string[]; env: Record<string, string>; stdin: 'inherit'; stdout: 'inherit'; stderr: 'inherit' },
  ) => {
    spawn(): { pid: number; status: Promise<{ code: number; signal: string | null }>; kill(signal: string): void }
  }
}

/** `pillion run -- CMD` under Deno: Deno.Command (needs --allow-run), sharing our stdio; env adds to ours. */
export function denoSpawn(command: string, args: string[], options: { env?: Record<string, string> } = {}): ChildApp {
  let child: ReturnType<InstanceType<typeof Deno.Command>['spawn']>
  try {
    child = new Deno.Command(command, { args, env: options.env ?? {}, stdin: 'inherit', stdout: 'inherit', stderr: 'inherit' }).spawn()
  } catch (error) {
    // Not found, no permission: it never ran, as node:child_process reports it through 'error'.
    return { pid: 0, exited: Promise.reject(error as Error), kill() {} }
  }
  let done = false
  const exited = child.status.then((status) => {
    done = true
    return status.code
  })
  return {
    pid: child.pid,
    exited,
    kill(signal) {
      if (done) return
      try {
        child.kill(signal)
      } catch {
        // exited meanwhile
      }
    },
  }
}
