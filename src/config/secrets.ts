import type { ConfigProblem } from '../core/config-error.ts'
import type { Runtime } from '../core/host.ts'
import { besidePolicyFile } from '../core/policy-file.ts'

/**
 * Secrets kept out of the policy file: `${env:NAME}` and `${file:PATH}` in any string value are
 * replaced when the file is loaded (start, every reload, `pillion check`), before the schema reads
 * the document, so a secret can stand wherever a string can. Only references with one of these
 * schemes are ours: every other `${…}` (the header templates' `${client_ip}`, `${jwt.sub}`) and its
 * `$${` escape pass through untouched, to be read later by whoever owns them. `$${env:` and
 * `$${file:` lose one `$` and become the literal text `${env:` and `${file:`.
 */

/** Where the values come from; what the loader is not given, it cannot resolve (a load error). */
export interface SecretSources {
  env?: (name: string) => string | undefined
  /** Reads a whole file synchronously; the path is already resolved against the policy file. */
  readFile?: (path: string) => string
}

/** The runtime's environment and files, for a policy file on this host. */
export function hostSecrets(host: Pick<Runtime, 'env' | 'readTextFileSync'>): SecretSources {
  return { env: (name) => host.env(name), readFile: (path) => host.readTextFileSync(path) }
}

/** What came from references: the key paths of the strings that held one, and the values put in. */
export interface SecretUses {
  paths: string[]
  values: string[]
}

export type KeyPath = Array<{ key: string | number }>

interface Walk {
  source: string
  sources: SecretSources
  format: (path: KeyPath) => string
  uses: SecretUses
  problems: ConfigProblem[]
}

/** Replaces references in every string of the parsed document, in place. */
export function resolveSecrets(
  document: unknown,
  source: string,
  sources: SecretSources,
  format: (path: KeyPath) => string,
): { uses: SecretUses; problems: ConfigProblem[] } {
  const walk: Walk = { source, sources, format, uses: { paths: [], values: [] }, problems: [] }
  visit(document, [], walk)
  return { uses: walk.uses, problems: walk.problems }
}

function visit(value: unknown, path: KeyPath, walk: Walk): unknown {
  if (typeof value === 'string') return value.includes('${') ? substituteAt(value, path, walk) : value
  if (Array.isArray(value)) {
    for (let index = 0; index < value.length; index++) value[index] = visit(value[index], [...path, { key: index }], walk)
  } else if (typeof value === 'object' && value !== null && !(value instanceof Date)) {
    const table = value as Record<string, unknown>
    for (const key of Object.keys(table)) table[key] = visit(table[key], [...path, { key }], walk)
  }
  return value
}

function substituteAt(text: string, path: KeyPath, walk: Walk): string {
  const at = walk.format(path)
  const result = substitute(text, (scheme, name) => lookUp(scheme, name, walk))
  if ('problem' in result) {
    walk.problems.push({ path: at, message: result.problem })
    return text
  }
  if (result.values.length > 0) {
    walk.uses.paths.push(at)
    for (const secret of result.values) if (!walk.uses.values.includes(secret)) walk.uses.values.push(secret)
  }
  return result.text
}

const SCHEME = /^(env|file):/

/** The text with its references replaced, and the values that went in; or the first problem. */
export function substitute(
  text: string,
  lookUp: (scheme: 'env' | 'file', name: string) => string | { problem: string },
): { text: string; values: string[] } | { problem: string } {
  let out = ''
  let at = 0
  const values: string[] = []
  for (;;) {
    const open = text.indexOf('${', at)
    if (open === -1) break
    const scheme = SCHEME.exec(text.slice(open + 2, open + 7))?.[1] as 'env' | 'file' | undefined
    if (scheme === undefined) {
      // Not ours (a header template's variable, or its own "$${" escape): left as written.
      out += text.slice(at, open + 2)
      at = open + 2
      continue
    }
    if (open > 0 && text[open - 1] === '$') {
      // "$${env:" is the literal "${env:"; the "$" before it is dropped.
      out += `${text.slice(at, open - 1)}\${`
      at = open + 2
      continue
    }
    const close = text.indexOf('}', open + 2)
    const reference = close === -1 ? text.slice(open) : text.slice(open, close + 1)
    if (close === -1) return { problem: `"\${${scheme}:" at character ${open + 1} is not closed by "}" (write $\${ for a literal \${)` }
    const name = text.slice(open + 2 + scheme.length + 1, close)
    if (name === '') return { problem: `${reference} names no ${scheme === 'env' ? 'environment variable' : 'file'}` }
    const value = lookUp(scheme, name)
    if (typeof value !== 'string') return { problem: `${reference}: ${value.problem}` }
    out += text.slice(at, open) + value
    values.push(value)
    at = close + 1
  }
  return { text: out + text.slice(at), values }
}

function lookUp(scheme: 'env' | 'file', name: string, walk: Walk): string | { problem: string } {
  if (scheme === 'env') {
    const value = walk.sources.env?.(name)
    if (value === undefined) return { problem: `expected the environment variable ${name} to be set, it is not` }
    if (value === '') return { problem: `expected the environment variable ${name} to hold a value, it is empty` }
    return value
  }
  const path = besidePolicyFile(name, walk.source)
  if (walk.sources.readFile === undefined) return { problem: `expected a readable file ${path}, but files cannot be read here` }
  let content: string
  try {
    content = walk.sources.readFile(path)
  } catch (error) {
    return { problem: `expected a readable file ${path}: ${(error as Error)?.message ?? String(error)}` }
  }
  // Mounted secrets and `echo secret > file` end with a newline that is no part of the secret.
  const value = content.replace(/\r?\n$/, '')
  if (value === '') return { problem: `expected the file ${path} to hold a value, it is empty` }
  return value
}

/**
 * A problem about a string that holds a secret shows the value it found: those values are blanked,
 * and so is a trailing `got "…"` (it may be cut short, and then no longer match the whole value).
 */
export function hideSecretsIn(problems: ConfigProblem[], uses: SecretUses): ConfigProblem[] {
  if (uses.values.length === 0) return problems
  return problems.map((problem) => {
    if (!uses.paths.some((path) => related(problem.path, path))) return problem
    let message = problem.message
    for (const secret of uses.values) message = message.split(secret).join(REDACTED_VALUE)
    message = message.replace(/got ".*"$/, `got ${REDACTED_VALUE}`)
    return { ...problem, message }
  })
}

const REDACTED_VALUE = '[redacted]'

/** One path is the other, or holds it. */
function related(a: string, b: string): boolean {
  return a.length <= b.length ? isAtOrUnder(b, a) : isAtOrUnder(a, b)
}

/** `routes[0].jwt.keys[1]` is under `routes[0]`, `routes[0].jwt` and itself; everything is under `""`. */
export function isAtOrUnder(path: string, holder: string): boolean {
  return path === holder || holder === '' || path.startsWith(`${holder}.`) || path.startsWith(`${holder}[`)
}
