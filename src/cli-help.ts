/** `pillion <command> --help`: each command's usage and options. The command list is HELP in cli.ts. */

const CONFIG_OPTION = '  -c, --config FILE     the policy file (default: $PILLION_CONFIG, then ./pillion.toml)'
const HELP_OPTION = '  -h, --help            this text'

export const COMMAND_HELP: Readonly<Record<string, string>> = {
  run: `Usage: pillion run [-c FILE] [--workers N]
       pillion run [-c FILE] -- CMD ARGS...

Starts the gateway on a policy file and serves until SIGTERM or SIGINT, then drains in-flight requests
for up to [gateway] shutdown_grace. SIGHUP or a change to the file reloads the policy; a policy that
does not load is refused and the one in force stays.

With -- CMD ARGS..., Pillion starts the app CMD once every listener is ready (if the gateway cannot
start, the app is never started and Pillion exits 1). The app shares Pillion's stdin, stdout and
stderr. SIGTERM, SIGINT and SIGHUP are passed on to it (SIGHUP also reloads the policy); the gateway
keeps serving until the app exits, so the app can finish its calls through egress, then drains and
Pillion exits with the app's exit code (128 + n if a signal n ended it, 127 if it could not start).
Not with --workers above 1.

$PILLION_BASE (a URL or file, with $PILLION_BASE_CACHE its copy) pins a locked base policy the file may
tighten but not loosen, whatever the file's [control] says; see docs/central-control.md.

Options:
${CONFIG_OPTION}
  --workers N           N processes serve the same listeners, 1 to 256 (default: $PILLION_WORKERS, then 1)
${HELP_OPTION}
`,
  check: `Usage: pillion check [--strict] FILE
       pillion check [--strict] [-c FILE]

Validates a policy file without starting anything. Exit 0 with a summary, or 1 listing every problem
as FILE: key.path: message (TOML syntax errors as FILE:LINE:COLUMN: message). A valid file is then
checked the way pillion run would at start: against its locked base ([control] base, read from its
file or URL, else base_cache), then TLS and CA files, API-key files, HMAC secrets in the environment,
the admin token, discovery files and inline JWT keys; anything run would refuse is listed too.
Warnings (exit 0): routes that can never match because an earlier route of the listener matches
everything they would, and endpoint or DNS-discovery names that do not resolve from here.

Options:
${CONFIG_OPTION}
  --strict              exit 1 on warnings too
${HELP_OPTION}
`,
  health: `Usage: pillion health [URL]

Exit 0 if URL answers with a 2xx status within 2 seconds; otherwise exit 1 and say why. A probe for
containers without curl.

URL defaults to http://127.0.0.1:9901/healthz, the admin listener's liveness check; /readyz answers
2xx once every listener is ready. With [gateway] probes set, use that address instead.

Options:
${HELP_OPTION}
`,
  init: `Usage: pillion init [-c FILE] [--service NAME] [--upstream URL] [--listen HOST:PORT]

Writes a commented starter policy that passes \`pillion check\`. Never overwrites an existing file.

Options:
  -c, --config FILE     where to write it (default: ./pillion.toml)
  --service NAME        [gateway] service, the name in logs and metrics (default: my-service)
  --upstream URL        the service this sidecar fronts (default: http://127.0.0.1:3000)
  --listen HOST:PORT    where callers reach the service through Pillion (default: 0.0.0.0:8080)
${HELP_OPTION}
`,
  version: `Usage: pillion version

Prints Pillion's version and the runtime it runs on. Also: pillion --version, pillion -v.

Options:
${HELP_OPTION}
`,
}

/** Whether `--help` or `-h` is among a command's own arguments: those after `--` belong to another program. */
export function asksForHelp(args: readonly string[]): boolean {
  const own = args.includes('--') ? args.slice(0, args.indexOf('--')) : args
  return own.includes('--help') || own.includes('-h')
}
