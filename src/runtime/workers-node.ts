import cluster from 'node:cluster'
import type { WorkerHost } from '../core/host.ts'
import { childWorker, stdinClosed } from './workers-process.ts'

/**
 * Node 20 has no SO_REUSEPORT (`listen({ reusePort })` came in 22.12), so workers are node:cluster
 * workers: a worker's listen() asks the primary (the supervisor) for the socket, and the primary
 * hands accepted connections to the workers in turn. The primary touches each connection once, at
 * accept; requests on a kept-alive connection never pass through it. Port 0 resolves once, in the
 * primary, so every worker gets the same port.
 */
export function clusterWorkers(): WorkerHost {
  return {
    sharing: 'cluster',
    unavailable: () => undefined,
    start(args, env) {
      cluster.setupPrimary({ exec: process.argv[1], args, execArgv: process.execArgv, stdio: ['pipe', 'pipe', 'inherit', 'ipc'] })
      return childWorker(cluster.fork(env).process)
    },
    // A cluster worker also exits by itself when the primary's IPC channel closes.
    onSupervisorGone: stdinClosed,
  }
}
