import { ConfigError } from './core/config-error.ts'
import { loadConfigText } from './config/load.ts'
import { hostSecrets } from './config/secrets.ts'
import { pinBase, type PinnedBase } from './config/pin-base.ts'
import type { Config } from './config/types.ts'
import { openPolicyFeed, type PolicyFeed } from './control/policy-feed.ts'
import { openLockedBase } from './control/locked-base.ts'
import { createReloader, type Reloader } from './control/reloader.ts'
import { startGateway, type RunningGateway } from './gateway/start.ts'
import { jsonLogger, type Logger } from './core/log.ts'
import type { Runtime } from './core/host.ts'
import { VERSION } from './core/version.ts'
import { supervise, workerRole, WORKERS_ENV } from './gateway/workers.ts'
import { preflight, preflightWarnings } from './gateway/preflight.ts'
import { init } from './init.ts'
import { asksForHelp, COMMAND_HELP } from './cli-help.ts'

const HELP = `pillion ${VERSION}: a microgateway sidecar configured by one TOML policy file

Usage:
  pillion run [-c FILE] [--workers N]
                            start the gateway (FILE defaults to $PILLION_CONFIG, then ./pillion.toml);
                            N processes serve the same listeners (default $PILLION_WORKERS, then 1)
  pillion run [-c FILE] -- CMD ARGS...
                            start the gateway, then the app CMD once every listener is ready; pass it
                            signals, drain after it exits, and exit with its exit code
  pillion check FILE        validate a policy file and what run would read at start (TLS, keys files,
                            secrets); exit 0, or 1 listing every problem
  pillion health URL        exit 0 if URL answers 2xx (a probe for containers without curl)
  pillion init [-c FILE] [--service NAME] [--upstream URL] [--listen HOST:PORT]
                            write a commented starter policy (default ./pillion.toml, service "my-service",
                            upstream http://127.0.0.1:3000, listen 0.0.0.0:8080); never overwrites a file
  pillion version           print the version and runtime
  pillion --help            this text; pillion COMMAND --help (or pillion help COMMAND) for one command
`

export async function runCli(runtime: Runtime): Promise<number> {
  const [command, ...rest] = runtime.args
  // `pillion run --help`, `pillion help run`: one command's usage, before anything else reads its arguments.
  const helpFor =
    command === 'help'
      ? rest[0]?.startsWith('-') === false
        ? rest[0]
        : undefined
      : command !== undefined && !command.startsWith('-') && asksForHelp(rest)
        ? command
        : undefined
  if (helpFor !== undefined) {
    const text = COMMAND_HELP[helpFor]
    if (text !== undefined) runtime.writeOut(text)
    else runtime.writeErr(`pillion: unknown command "${helpFor}"\n\n${HELP}`)
    return text === undefined ? 2 : 0
  }
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

/** `PILLION_BASE`: a locked base the platform's deployment pins, which the policy file cannot move or drop. */
function pinnedBase(runtime: Runtime): PinnedBase | undefined {
  const base = runtime.env('PILLION_BASE')
  if (base === undefined || base === '') return undefined
  const baseCache = runtime.env('PILLION_BASE_CACHE')
  return baseCache === undefined || baseCache === '' ? { base } : { base, baseCache }
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
    return { config: pinBase(loadConfigText(text, path, hostSecrets(runtime)), pinnedBase(runtime)), text }
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    runtime.writeErr(error.message)
    return undefined
  }
}

async function check(runtime: Runtime, allArgs: string[]): Promise<number> {
  const strict = allArgs.includes('--strict')
  const args = allArgs.filter((arg) => arg !== '--strict')
  const path = args.length === 1 && !args[0]!.startsWith('-') ? args[0]! : configPath(runtime, args)
  if (typeof path !== 'string') {
    runtime.writeErr(`pillion check: ${path.error}`)
    return 2
  }
  const loaded = await loadConfig(runtime, path)
  if (loaded === undefined) return 1
  const locked = await checkBase(runtime, path, loaded)
  if (locked === undefined) return 1
  const { config } = locked
  // What run would refuse at start beyond the file itself: TLS and CA files, keys files, secrets, the admin token.
  const problems = await preflight(config, runtime)
  if (problems.length > 0) {
    runtime.writeErr(`${path}: the policy is valid, but pillion run would refuse it:\n${problems.map((problem) => `  ${problem}`).join('\n')}`)
    return 1
  }
  const warnings = await preflightWarnings(config, runtime)
  for (const warning of warnings) runtime.writeErr(`${path}: warning: ${warning}`)
  if (strict && warnings.length > 0) {
    runtime.writeErr(`${path}: ${warnings.length} warning${warnings.length === 1 ? '' : 's'}, and --strict makes them errors`)
    return 1
  }
  const base = locked.locks === undefined ? '' : `, ${locked.locks} keys locked by ${config.control!.base}`
  const warned = warnings.length === 0 ? '' : `, ${warnings.length} warning${warnings.length === 1 ? '' : 's'}`
  runtime.writeOut(`${path}: ok (${Object.keys(config.listeners).length} listeners, ${config.routes.length} routes${base}${warned})`)
  return 0
}

/** The file checked against its locked base, as run would check it at start; undefined after saying why not. */
async function checkBase(runtime: Runtime, path: string, loaded: { config: Config; text: string }): Promise<{ config: Config; locks?: number } | undefined> {
  const control = loaded.config.control
  if (control?.base === undefined) return loaded
  try {
    const base = await openLockedBase({ ...control, base: control.base }, runtime, jsonLogger(runtime.writeErr, loaded.config.gateway.service))
    const config = pinBase(loadConfigText(loaded.text, path, hostSecrets(runtime), base.current), pinnedBase(runtime))
    return { config, locks: base.status().locks.length }
  } catch (error) {
    runtime.writeErr(error instanceof ConfigError ? error.message : `${path}: ${(error as Error).message}`)
    return undefined
  }
}

async function run(runtime: Runtime, allArgs: string[]): Promise<number> {
  const role = workerRole(runtime)
  // `pillion run [-c FILE] -- CMD ARGS…`: what follows `--` is the app Pillion starts once it is ready.
  const split = allArgs.indexOf('--')
  const args = split === -1 ? allArgs : allArgs.slice(0, split)
  const app = split === -1 ? undefined : allArgs.slice(split + 1)
  if (app !== undefined && app.length === 0) {
    runtime.writeErr('pillion run: -- needs a command to run, as in: pillion run -c pillion.toml -- node server.js')
    return 2
  }
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
  if (app !== undefined && workers.workers > 1) {
    runtime.writeErr('pillion run: -- CMD runs one gateway beside one app; it cannot be combined with --workers (or PILLION_WORKERS) above 1')
    return 2
  }
  // A worker never supervises: it inherited PILLION_WORKERS, and its arguments have no --workers.
  if (role === undefined && workers.workers > 1) return supervise(runtime, { count: workers.workers, args: ['run', ...workers.rest] })
  const loaded = await loadConfig(runtime, path)
  if (loaded === undefined) return 1
  const logger = jsonLogger(runtime.writeErr, loaded.config.gateway.service)
  let feed: PolicyFeed
  try {
    feed = await openPolicyFeed(path, loaded, runtime, logger, pinnedBase(runtime))
  } catch (error) {
    runtime.writeErr(error instanceof ConfigError ? error.message : `pillion: cannot start: ${(error as Error).message}`)
    return 1
  }
  const { config, text } = feed.initial
  let reloader: Reloader | undefined
  let gateway: RunningGateway
  try {
    gateway = await startGateway(config, runtime, logger, {
      ...(role === undefined ? {} : { worker: role.binding }),
      admin: {
        status: () => (reloader === undefined ? { version: '' } : { ...reloader.status(), ...(feed.base === undefined ? {} : { base: feed.base.status() }) }),
        reload: () => reloader!.reload('admin'),
      },
      onCertificateFileChanged: () => void reloader?.reload('certificate'),
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
    fingerprint: (next) => feed.fingerprint(next),
    apply: (next) => gateway.apply(next),
    refresh: () => gateway.rotateCertificates(),
    logger,
  })
  const watching = feed.watch((trigger) => reloader!.reload(trigger))
  runtime.onSignal('SIGHUP', () => void reloader!.reload('signal'))
  runtime.writeOut(`pillion: ${config.gateway.service} ready in ${Math.round(performance.now())}ms (${runtime.name} ${runtime.version})`)
  if (app !== undefined) return runApp(runtime, app, gateway, watching, logger)
  return new Promise<number>((resolve) => {
    let stopping = false
    const stop = async () => {
      if (stopping) return
      stopping = true
      watching()
      runtime.writeOut('pillion: shutting down, draining in-flight requests')
      resolve(await drain(gateway, runtime, logger))
    }
    runtime.onSignal('SIGTERM', stop)
    runtime.onSignal('SIGINT', stop)
    // A worker whose supervisor was killed outright must not go on holding the ports.
    if (role !== undefined) runtime.workers.onSupervisorGone(stop)
  })
}

/**
 * `pillion run -- CMD ARGS…`, once every listener is ready: starts the app with Pillion's stdio and
 * passes SIGTERM, SIGINT and SIGHUP on to it (SIGHUP also reloads the policy). The gateway keeps
 * serving until the app has exited, so an app told to stop can still finish its calls through
 * egress; then it drains, and Pillion exits with the app's code (128 + n after signal n; 127 if the
 * app could not be started).
 */
async function runApp(runtime: Runtime, command: string[], gateway: RunningGateway, watching: () => void, logger: Logger): Promise<number> {
  const [program, ...args] = command as [string, ...string[]]
  const child = runtime.spawn(program, args)
  runtime.onSignal('SIGTERM', () => child.kill('SIGTERM'))
  runtime.onSignal('SIGINT', () => child.kill('SIGINT'))
  runtime.onSignal('SIGHUP', () => child.kill('SIGHUP'))
  let code: number
  try {
    code = await child.exited
    runtime.writeOut(`pillion: ${program} exited with ${code}, draining in-flight requests`)
  } catch (error) {
    runtime.writeErr(`pillion run: cannot start ${program}: ${(error as Error).message}`)
    code = 127
  }
  watching()
  const stopped = await drain(gateway, runtime, logger)
  return code === 0 ? stopped : code
}

/**
 * Drains and stops the gateway: 0 once stopped, 1 when a step of the shutdown failed. A failure is
 * logged and still ends the run, so the process exits instead of staying up with its listeners
 * closed, deaf to the next SIGTERM (it had taken the first).
 */
export async function drain(gateway: Pick<RunningGateway, 'shutdown'>, runtime: Pick<Runtime, 'writeOut'>, logger: Logger): Promise<number> {
  try {
    const drained = await gateway.shutdown()
    runtime.writeOut(drained ? 'pillion: stopped' : 'pillion: stopped after shutdown grace')
    return 0
  } catch (error) {
    logger.log('error', 'shutdown failed', { error: error instanceof Error ? error.message : String(error) })
    return 1
  }
}

const DEFAULT_HEALTH_URL = 'http://127.0.0.1:9901/healthz'
const HEALTH_TIMEOUT_MS = 2000

async function health(runtime: Runtime, args: string[]): Promise<number> {
  if (args.length > 1) {
    runtime.writeErr(`pillion health: unexpected argument "${args[1]}"\nusage: pillion health [URL]`)
    return 2
  }
  const url = args[0] ?? DEFAULT_HEALTH_URL
  if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) {
    runtime.writeErr(`pillion health: expected an http:// or https:// URL like ${DEFAULT_HEALTH_URL}, got ${JSON.stringify(url)}`)
    return 2
  }
  // The default URL is the admin listener's; a URL given may be the probes listener or anything else.
  const what = args[0] === undefined ? `the admin listener at ${url}` : url
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(HEALTH_TIMEOUT_MS) })
    await response.body?.cancel()
    if (response.ok) return 0
    runtime.writeErr(`pillion health: ${what} answered ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`)
    return 1
  } catch (error) {
    runtime.writeErr(`pillion health: cannot reach ${what}: ${unreachable(error)}`)
    return 1
  }
}

/** Why a fetch failed, in the same words on Node, Bun and Deno (each words and nests its errors differently). */
export function unreachable(error: unknown): string {
  const found: string[] = []
  for (let e = error as { name?: unknown; code?: unknown; message?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    found.push(String(e.name ?? ''), String(e.code ?? ''), String(e.message ?? ''))
  }
  const text = found.join(' ')
  if (/TimeoutError|AbortError|ETIMEDOUT|UND_ERR_CONNECT_TIMEOUT|timed out/i.test(text)) return `no answer within ${HEALTH_TIMEOUT_MS / 1000}s`
  if (/ECONNREFUSED|ConnectionRefused|connection refused/i.test(text)) return 'connection refused (is pillion running, and listening there?)'
  if (/ENOTFOUND|EAI_AGAIN|dns error|failed to lookup/i.test(text)) return 'host not found'
  if (/ECONNRESET|UND_ERR_SOCKET|connection reset|ConnectionClosed|socket hang up/i.test(text)) return 'connection reset'
  if (/CERT|certificate|TLS|SSL/i.test(text)) return 'TLS handshake failed (certificate or protocol)'
  const innermost = found.filter((part, index) => index % 3 === 2 && part !== '' && part !== 'fetch failed').at(-1)
  return innermost ?? 'unknown network error'
}
