import { ConfigError } from './core/config-error.ts'
import { loadConfigText } from './config/load.ts'
import { hostSecrets } from './config/secrets.ts'
import type { Config } from './config/types.ts'
import { openPolicyFeed } from './control/policy-feed.ts'
import { createReloader, type Reloader } from './control/reloader.ts'
import { startGateway, type RunningGateway } from './gateway/start.ts'
import { jsonLogger } from './core/log.ts'
import type { Runtime } from './core/host.ts'
import { VERSION } from './core/version.ts'
import { supervise, workerRole, WORKERS_ENV } from './gateway/workers.ts'
import { init } from './init.ts'

const HELP = `pillion ${VERSION}: a microgateway sidecar configured by one TOML policy file

Usage:
  pillion run [-c FILE] [--workers N]
                            start the gateway (FILE defaults to $PILLION_CONFIG, then ./pillion.toml);
                            N processes serve the same listeners (default $PILLION_WORKERS, then 1)
  pillion check FILE        validate a policy file; exit 0, or 1 listing every problem
  pillion health URL        exit 0 if URL answers 2xx (a probe for containers without curl)
  pillion init [-c FILE] [--service NAME] [--upstream URL] [--listen HOST:PORT]
                            write a commented starter policy (default ./pillion.toml, service "my-service",
                            upstream http://127.0.0.1:3000, listen 0.0.0.0:8080); never overwrites a file
  pillion version           print the version and runtime
  pillion --help            this text
`

export async function runCli(runtime: Runtime): Promise<number> {
  const [command, ...rest] = runtime.args
  switch (command) {
    case 'run':
      return run(runtime, rest)
    case 'check':
      return check(runtime, rest)
    case 'init':
      return init(runtime, rest)
    case 'health':
      return health(runtime, rest)
    case 'version':
    case '--version':
    case '-v':
      runtime.writeOut(`pillion ${VERSION} (${runtime.name} ${runtime.version})`)
      return 0
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      runtime.writeOut(HELP)
      return 0
    default:
      runtime.writeErr(`pillion: unknown command "${command}"\n\n${HELP}`)
      return 2
  }
}

function configPath(runtime: Runtime, args: string[]): string | { error: string } {
  let path: string | undefined
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === '-c' || arg === '--config') {
      path = args[++i]
      if (path === undefined) return { error: `${arg} needs a file name` }
    } else if (arg.startsWith('--config=')) {
      path = arg.slice('--config='.length)
    } else {
      return { error: `unexpected argument "${arg}"` }
    }
  }
  return path ?? runtime.env('PILLION_CONFIG') ?? './pillion.toml'
}

const MAX_WORKERS = 256

/** Takes `--workers N` out of `run`'s arguments: N, and the arguments a worker is started with. */
function workersArg(runtime: Runtime, args: string[]): { workers: number; rest: string[] } | { error: string } {
  let value = runtime.env(WORKERS_ENV)
  const rest: string[] = []
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === '--workers') {
      value = args[++i]
      if (value === undefined) return { error: '--workers needs a number' }
    } else if (arg.startsWith('--workers=')) value = arg.slice('--workers='.length)
    else rest.push(arg)
  }
  if (value === undefined || value === '') return { workers: 1, rest }
  const workers = Number(value)
  if (!/^\d+$/.test(value) || workers < 1 || workers > MAX_WORKERS) return { error: `--workers must be a whole number from 1 to ${MAX_WORKERS}, got "${value}"` }
  return { workers, rest }
}

async function loadConfig(runtime: Runtime, path: string): Promise<{ config: Config; text: string } | undefined> {
  let text: string
  try {
    text = await runtime.readTextFile(path)
  } catch (error) {
    runtime.writeErr(`pillion: cannot read ${path}: ${(error as Error).message}`)
    return undefined
  }
  try {
    return { config: loadConfigText(text, path, hostSecrets(runtime)), text }
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    runtime.writeErr(error.message)
    return undefined
  }
}

async function check(runtime: Runtime, args: string[]): Promise<number> {
  const path = args.length === 1 && !args[0]!.startsWith('-') ? args[0]! : configPath(runtime, args)
  if (typeof path !== 'string') {
    runtime.writeErr(`pillion check: ${path.error}`)
    return 2
  }
  const loaded = await loadConfig(runtime, path)
  if (loaded === undefined) return 1
  const { config } = loaded
  runtime.writeOut(`${path}: ok (${Object.keys(config.listeners).length} listeners, ${config.routes.length} routes)`)
  return 0
}

async function run(runtime: Runtime, args: string[]): Promise<number> {
  const role = workerRole(runtime)
  const workers = workersArg(runtime, args)
  if ('error' in workers) {
    runtime.writeErr(`pillion run: ${workers.error}`)
    return 2
  }
  const path = configPath(runtime, workers.rest)
  if (typeof path !== 'string') {
    runtime.writeErr(`pillion run: ${path.error}`)
    return 2
  }
  // A worker never supervises: it inherited PILLION_WORKERS, and its arguments have no --workers.
  if (role === undefined && workers.workers > 1) return supervise(runtime, { count: workers.workers, args: ['run', ...workers.rest] })
  const loaded = await loadConfig(runtime, path)
  if (loaded === undefined) return 1
  const logger = jsonLogger(runtime.writeErr, loaded.config.gateway.service)
  const feed = await openPolicyFeed(path, loaded, runtime, logger)
  const { config, text } = feed.initial
  let reloader: Reloader | undefined
  let gateway: RunningGateway
  try {
    gateway = await startGateway(config, runtime, logger, {
      ...(role === undefined ? {} : { worker: role.binding }),
      admin: {
        status: () => reloader?.status() ?? { version: '' },
        reload: () => reloader!.reload('admin'),
      },
    })
  } catch (error) {
    runtime.writeErr(`pillion: cannot start: ${(error as Error).message}`)
    return 1
  }
  reloader = await createReloader({
    source: feed.name,
    initialText: text,
    read: () => feed.read(),
    load: (next) => feed.load(next),
    applied: (next) => feed.applied(next),
    apply: (next) => gateway.apply(next),
    logger,
  })
  const watching = feed.watch((trigger) => void reloader!.reload(trigger))
  runtime.onSignal('SIGHUP', () => void reloader!.reload('signal'))
  runtime.writeOut(`pillion: ${config.gateway.service} ready in ${Math.round(performance.now())}ms (${runtime.name} ${runtime.version})`)
  return new Promise<number>((resolve) => {
    let stopping = false
    const stop = async () => {
      if (stopping) return
      stopping = true
      watching()
      runtime.writeOut('pillion: shutting down, draining in-flight requests')
      const drained = await gateway.shutdown()
      runtime.writeOut(drained ? 'pillion: stopped' : 'pillion: stopped after shutdown grace')
      resolve(0)
    }
    runtime.onSignal('SIGTERM', stop)
    runtime.onSignal('SIGINT', stop)
    // A worker whose supervisor was killed outright must not go on holding the ports.
    if (role !== undefined) runtime.workers.onSupervisorGone(stop)
  })
}

async function health(runtime: Runtime, args: string[]): Promise<number> {
  const url = args[0] ?? 'http://127.0.0.1:9901/healthz'
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(2000) })
    await response.body?.cancel()
    return response.ok ? 0 : 1
  } catch (error) {
    runtime.writeErr(`pillion health: ${url}: ${(error as Error).message}`)
    return 1
  }
}
