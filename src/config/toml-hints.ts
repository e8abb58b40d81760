import type { ConfigProblem } from '../core/config-error.ts'

/**
 * Two TOML traps whose plain message does not say what to change: a list of tables written with
 * single brackets (`[routes.rate_limit]` for `[[routes.rate_limit]]`), and a route's sub-table
 * written before the first `[[routes]]`, which makes `routes` a table the `[[routes]]` header then
 * cannot extend. The hint is read off the file's own text and added to the problem's message.
 */
export function withTomlHint(problem: ConfigProblem, text: string): ConfigProblem {
  const hint = problem.line === undefined ? (singleBracketHint(problem, text) ?? subTableHint(problem, text)) : orderHint(problem, text)
  return hint === undefined ? problem : { ...problem, message: `${problem.message}; ${hint}` }
}

/** `[ routes . rate_limit ]` → `routes.rate_limit`: a header's dotted key, spaces dropped. */
function headerKey(inside: string): string {
  return inside
    .split('.')
    .map((part) => part.trim())
    .join('.')
}

interface Header {
  line: number
  key: string
  double: boolean
}

/** Every table header of the file, `[a.b]` and `[[a.b]]`, with its 1-based line; quoted keys are left as written. */
function headers(text: string): Header[] {
  const found: Header[] = []
  for (const [index, line] of text.split(/\r?\n/).entries()) {
    const match = /^\s*(\[\[?)\s*([^[\]]+?)\s*\]\]?\s*(?:#.*)?$/.exec(line)
    if (match) found.push({ line: index + 1, key: headerKey(match[2]!), double: match[1] === '[[' })
  }
  return found
}

/** "routes[0].rate_limit: expected an array, got a table" where the file has a `[routes.rate_limit]` header. */
function singleBracketHint({ path, message }: ConfigProblem, text: string): string | undefined {
  if (!/^expected an array\b/.test(message) || !message.endsWith('got a table') || message.includes('[[')) return undefined
  const key = path.replace(/\[\d+\]/g, '')
  if (key === '') return undefined
  const written = headers(text).filter((header) => !header.double && header.key === key)
  if (written.length === 0) return undefined
  const where = written.length === 1 ? ` on line ${written[0]!.line}` : ''
  return `[${key}]${where} makes one table: write [[${key}]] (double brackets) for each entry`
}

/** "cannot redefine existing key 'routes'" on a `[[routes]]` line after a `[routes.x]` header. */
function orderHint({ line, message }: ConfigProblem, text: string): string | undefined {
  if (!/cannot redefine existing key/i.test(message)) return undefined
  const all = headers(text)
  const arrayHeader = all.find((header) => header.line === line && header.double)
  if (arrayHeader === undefined) return undefined
  const { key } = arrayHeader
  const before = all.find((header) => header.line < arrayHeader.line && !header.double && (header.key === key || header.key.startsWith(`${key}.`)))
  if (before === undefined) return undefined
  const sub = before.key === key ? '' : before.key.slice(key.length + 1)
  return sub === ''
    ? `[${key}] on line ${before.line} made ${key} one table, so [[${key}]] cannot add entries to it: write every entry as [[${key}]]`
    : `[${before.key}] on line ${before.line} comes before the first [[${key}]] and so made ${key} a table: put it after the [[${key}]] header of the entry it belongs to (a [${key}.${sub}] table extends the [[${key}]] above it)`
}

/** "routes: expected an array of tables, written [[routes]], got a table" where the file has `[routes.x]` and no `[[routes]]`. */
function subTableHint({ path, message }: ConfigProblem, text: string): string | undefined {
  if (!message.includes(`[[${path}]]`) || !message.endsWith('got a table')) return undefined
  const all = headers(text)
  if (all.some((header) => header.double && header.key === path)) return undefined
  const sub = all.find((header) => header.key.startsWith(`${path}.`))
  if (sub === undefined) return undefined
  const name = sub.key.slice(path.length + 1).split('.')[0]!
  return `[${sub.key}] on line ${sub.line} is a table inside ${path}, not an entry: start each entry with [[${path}]] (and name = ${JSON.stringify(name)}, if that was its name), then its [${path}.x] tables below it`
}
