export interface ConfigProblem {
  /** Key path inside the file, zero-based: `routes[1].upstream`; `""` for the whole file. */
  path: string
  message: string
  /** Set for TOML syntax errors, where a key path does not exist yet. */
  line?: number
  column?: number
}

export class ConfigError extends Error {
  override name = 'ConfigError'
  readonly source: string
  readonly problems: ConfigProblem[]

  constructor(source: string, problems: ConfigProblem[]) {
    super(formatProblems(source, problems))
    this.source = source
    this.problems = problems
  }
}

/** One line per problem: `orders.toml: routes[1].upstream: no upstream named "x" (defined: local)`. */
export function formatProblems(source: string, problems: readonly ConfigProblem[]): string {
  return problems.map((problem) => formatProblem(source, problem)).join('\n')
}

function formatProblem(source: string, { path, message, line, column }: ConfigProblem): string {
  if (line !== undefined) return `${source}:${line}:${column ?? 1}: ${message}`
  return path === '' ? `${source}: ${message}` : `${source}: ${path}: ${message}`
}

/** How a value found in the file is shown in messages, in TOML terms. */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value)
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value)
  if (value === undefined) return 'nothing'
  if (Array.isArray(value)) return 'an array'
  if (value instanceof Date) return 'a date'
  return 'a table'
}

export function expectedGot(expected: string, found: unknown): string {
  return `expected ${expected}, got ${describeValue(found)}`
}

/** "no upstream named \"x\" (defined: a, b)" when `name` is a non-empty string that is not among `defined`. */
export function missingReference(kind: string, name: unknown, defined: string[]): string | undefined {
  if (typeof name !== 'string' || name === '' || defined.includes(name)) return undefined
  return `no ${kind} named ${JSON.stringify(name)} (defined: ${defined.length > 0 ? defined.join(', ') : 'none'})`
}
