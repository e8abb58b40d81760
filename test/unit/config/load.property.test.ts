import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import { loadConfigText } from '../../../src/config/load.ts'
import { ConfigError } from '../../../src/core/config-error.ts'

const dir = join(import.meta.dirname, '../../../policies')
const examples = readdirSync(dir)
  .filter((name) => name.endsWith('.toml'))
  .map((name) => readFileSync(join(dir, name), 'utf8'))

/** Values a careless edit leaves behind: wrong types, bad units, empty things, odd characters. */
const junkValue = fc.constantFrom('0', '-1', '1e400', '""', '"x"', '"5 minutes"', '"-1s"', 'true', '[]', '{}', '[1, "a"]', '{ a = 1 }', '"\\u0000"', '1979-05-27', 'nan', 'inf', '"${env:PILLION_UNSET}"', '"${file:/nope}"', '"*"', '"/"', '"..%2f"')
const junkLine = fc.constantFrom('[routes]', '[[routes]]', '[[upstreams]]', '[gateway]', 'x = ', '= 1', 'a.b.c = 1', '[routes.retry]', '"', "'''", '[limits]\nmax_body = "1zb"', '')

/** One edit to one line: drop it, double it, change its value, or put a junk line before it. */
const edit = fc.record({ line: fc.nat(), kind: fc.constantFrom('drop', 'double', 'value', 'insert'), value: junkValue, junk: junkLine })
type Edit = typeof edit extends fc.Arbitrary<infer T> ? T : never

function applyEdits(text: string, edits: readonly Edit[]): string {
  const lines = text.split('\n')
  for (const { line, kind, value, junk } of edits) {
    const at = line % lines.length
    const current = lines[at]!
    if (kind === 'drop') lines.splice(at, 1)
    else if (kind === 'double') lines.splice(at, 0, current)
    else if (kind === 'insert') lines.splice(at, 0, junk)
    else if (current.includes('=')) lines[at] = `${current.slice(0, current.indexOf('=') + 1)} ${value}`
  }
  return lines.join('\n')
}

/** Loads or refuses with problems that each say where (a key path, or a line for syntax) and what. */
function loadsOrExplains(text: string): void {
  try {
    loadConfigText(text, 'pillion.toml', { env: () => undefined, readFile: (path) => { throw new Error(`ENOENT: no such file or directory, open '${path}'`) } })
  } catch (error) {
    assert.ok(error instanceof ConfigError, `threw ${error instanceof Error ? error.stack : String(error)}\nfor:\n${text}`)
    assert.ok(error.problems.length > 0)
    for (const problem of error.problems) {
      assert.equal(typeof problem.path, 'string')
      assert.ok(problem.message.length > 0 && !/\bat \S+ \(|undefined|\[object /.test(problem.message), `unclear problem: ${JSON.stringify(problem)}`)
      assert.ok(problem.path !== '' || problem.line !== undefined || /TOML|file|route|listener|upstream/i.test(problem.message), `a problem that says neither where nor about what: ${JSON.stringify(problem)}`)
    }
  }
}

describe('loading a policy file, by property', () => {
  test('every example, edited at random, loads or is refused with located problems, never with a crash', () => {
    fc.assert(
      fc.property(fc.constantFrom(...examples), fc.array(edit, { minLength: 1, maxLength: 4 }), (example, edits) => {
        loadsOrExplains(applyEdits(example, edits))
      }),
      { numRuns: 1500 },
    )
  })

  test('arbitrary text loads or is refused, never with a crash', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (text) => loadsOrExplains(text)),
      { numRuns: 1000 },
    )
  })
})
