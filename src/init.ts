import { ConfigError } from './core/config-error.ts'
import { loadConfigText } from './config/load.ts'
import type { Runtime } from './core/host.ts'

/** `pillion init`: a commented starter policy, written only where no file is yet (Caddy's one-line start). */

export interface StarterOptions {
  service: string
  /** The service this sidecar fronts, as an endpoint URL. */
  upstream: string
  /** Where callers reach the service through Pillion. */
  listen: string
}

export const STARTER_DEFAULTS: StarterOptions = { service: 'my-service', upstream: 'http://127.0.0.1:3000', listen: '0.0.0.0:8080' }

/** TOML basic strings take JSON's escapes, so a JSON string is a TOML string. */
const quoted = (value: string) => JSON.stringify(value)

export function starterPolicy({ service, upstream, listen }: StarterOptions): string {
  return `# Pillion policy, written by \`pillion init\`. Check it with \`pillion check pillion.toml\`, run it with
# \`pillion run\`. Every key Pillion understands is in policies/reference.toml; docs/configuration.md explains them.

[gateway]
# The service this sidecar fronts, as logs and metrics name it.
service = ${quoted(service)}
# admin = "127.0.0.1:9901"      # the admin API and dashboard (default); keep it on loopback
# probes = "0.0.0.0:9902"       # /healthz, /readyz and /metrics without a token, for the kubelet and Prometheus
# shutdown_grace = "10s"        # how long SIGTERM waits for in-flight requests

# Ingress: callers come here instead of to the service.
[listeners.ingress]
listen = ${quoted(listen)}
direction = "ingress"

# Egress: the service sends its outbound calls here (or sets HTTP_PROXY=http://127.0.0.1:15001).
# [listeners.egress]
# listen = "127.0.0.1:15001"
# direction = "egress"

# The service itself.
[upstreams.local]
endpoints = [${quoted(upstream)}]
# connect_timeout = "1s"

# Policies for every route that does not set its own.
[defaults]
timeout = "15s"                 # whole request, response body included
retry = { attempts = 2 }        # idempotent methods, on connect failures, resets and 502/503/504

# Routes are tried in file order; the first match wins.
[[routes]]
name = "inbound"
listener = "ingress"
path = "/*"                     # everything
upstream = "local"
# rate_limit = [{ rate = "100/s" }]    # per client IP
`
}

const USAGE = 'usage: pillion init [-c FILE] [--service NAME] [--upstream URL] [--listen HOST:PORT]'

/** Reads `--name VALUE` and `--name=VALUE` options; `-c` is `--config`. */
function initArgs(args: string[]): { file: string; starter: StarterOptions } | { error: string } {
  const values: Record<string, string> = {}
  const known = new Set(['config', 'service', 'upstream', 'listen'])
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    const [flag, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined]
    const name = flag === '-c' ? 'config' : flag.startsWith('--') ? flag.slice(2) : ''
    if (!known.has(name)) return { error: `unexpected argument "${arg}"` }
    const value = inline ?? args[++i]
    if (value === undefined || value === '') return { error: `${flag} needs a value` }
    values[name] = value
  }
  return {
    file: values.config ?? './pillion.toml',
    starter: { service: values.service ?? STARTER_DEFAULTS.service, upstream: values.upstream ?? STARTER_DEFAULTS.upstream, listen: values.listen ?? STARTER_DEFAULTS.listen },
  }
}

function alreadyExists(error: unknown): boolean {
  const { code, name } = error as { code?: string; name?: string }
  return code === 'EEXIST' || name === 'AlreadyExists'
}

export async function init(runtime: Pick<Runtime, 'readTextFile' | 'writeTextFile' | 'writeOut' | 'writeErr'>, args: string[]): Promise<number> {
  const parsed = initArgs(args)
  if ('error' in parsed) {
    runtime.writeErr(`pillion init: ${parsed.error}\n${USAGE}`)
    return 2
  }
  const { file, starter } = parsed
  const text = starterPolicy(starter)
  // The options end up in the file: the loader `pillion check` uses says what is wrong with them.
  try {
    loadConfigText(text, file)
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    runtime.writeErr(`pillion init: --service, --upstream or --listen make an invalid policy; nothing written\n${error.message}`)
    return 2
  }
  const refuse = () => {
    runtime.writeErr(`pillion init: ${file} already exists; not overwriting it (remove it, or write elsewhere with -c FILE)`)
    return 1
  }
  const exists = await runtime.readTextFile(file).then(
    () => true,
    (error: unknown) => alreadyExists(error) || (error as { code?: string }).code === 'EISDIR' || (error as { name?: string }).name === 'IsADirectory',
  )
  if (exists) return refuse()
  try {
    await runtime.writeTextFile(file, text, { createOnly: true })
  } catch (error) {
    if (alreadyExists(error)) return refuse()
    runtime.writeErr(`pillion init: cannot write ${file}: ${(error as Error).message}`)
    return 1
  }
  runtime.writeOut(`pillion: wrote ${file} (service "${starter.service}": ${starter.listen} -> ${starter.upstream}); next: pillion check ${file}`)
  return 0
}
