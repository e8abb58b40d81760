// Keeps the core runtime-neutral: only src/runtime/ may touch Node, Bun or Deno APIs, and every relative
// import names its .ts file (Deno resolves nothing else).
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const SRC = path.join(ROOT, 'src')

interface Finding {
  file: string
  line: number
  rule: string
  text: string
}

/** Blanks out comments (keeping line breaks and string literals), so prose about `process.env` is allowed. */
export function stripComments(source: string): string {
  let out = ''
  let i = 0
  let quote: string | null = null
  while (i < source.length) {
    const ch = source[i]!
    const next = source[i + 1]
    if (quote !== null) {
      out += ch
      if (ch === '\\') {
        out += next ?? ''
        i += 2
        continue
      }
      // quotes end at a line break too, so a stray quote (e.g. in a regex literal) confuses one line at most
      if (ch === quote || (ch === '\n' && quote !== '`')) quote = null
      i++
    } else if (ch === '/' && next === '/') {
      while (i < source.length && source[i] !== '\n') i++
    } else if (ch === '/' && next === '*') {
      const end = source.indexOf('*/', i + 2)
      const stop = end === -1 ? source.length : end + 2
      out += source.slice(i, stop).replace(/[^\n]/g, ' ')
      i = stop
    } else {
      if (ch === '"' || ch === "'" || ch === '`') quote = ch
      out += ch
      i++
    }
  }
  return out
}

const CORE_RULES: Array<[string, RegExp]> = [
  ["import from 'node:*'", /\bfrom\s*['"]node:|\bimport\s*\(?\s*['"]node:/],
  ['require(', /(?<![\w$.])require\s*\(/],
  ['process.', /(?<![\w$.])process\s*\./],
  ['Buffer', /(?<![\w$.])Buffer\s*[.(]/],
  ['Bun.', /(?<![\w$.])Bun\s*\./],
  ['Deno.', /(?<![\w$.])Deno\s*\./],
]

const RELATIVE_IMPORT = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(['"])(\.{1,2}\/[^'"]*)\1/g

function listTs(dir: string): string[] {
  if (!fs.existsSync(dir)) return []
  const out: string[] = []
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name)
    if (entry.isDirectory()) out.push(...listTs(p))
    else if (entry.isFile() && entry.name.endsWith('.ts')) out.push(p)
  }
  return out.sort()
}

/** Scans a source tree; `srcDir/runtime/` is exempt from the runtime-API rules but not from the import rule. */
export function scan(srcDir: string): Finding[] {
  const findings: Finding[] = []
  const runtimeDir = path.join(srcDir, 'runtime') + path.sep
  for (const file of listTs(srcDir)) {
    const rel = path.relative(path.dirname(srcDir), file).split(path.sep).join('/')
    const original = fs.readFileSync(file, 'utf8').split('\n')
    const lines = stripComments(fs.readFileSync(file, 'utf8')).split('\n')
    const isRuntime = file.startsWith(runtimeDir)
    lines.forEach((raw, idx) => {
      const text = original[idx]!.trim()
      const line = raw.replace(/\bglobalThis\s*\.\s*/g, '')
      if (!isRuntime) {
        for (const [rule, re] of CORE_RULES) {
          if (re.test(line)) findings.push({ file: rel, line: idx + 1, rule, text })
        }
      }
      for (const m of raw.matchAll(RELATIVE_IMPORT)) {
        if (!/\.(ts|json)$/.test(m[2]!)) {
          findings.push({ file: rel, line: idx + 1, rule: `relative import without .ts: ${m[2]}`, text })
        }
      }
    })
  }
  return findings
}

function report(findings: Finding[]): string {
  return findings.map((f) => `  ${f.file}:${f.line}  [${f.rule}]  ${f.text}`).join('\n')
}

describe('portability of src/', () => {
  it('has source files to check', () => {
    assert.ok(listTs(SRC).length > 0, `no .ts files under ${SRC}`)
  })

  it('uses runtime APIs only in src/runtime/ and .ts in every relative import', () => {
    const findings = scan(SRC)
    assert.equal(
      findings.length,
      0,
      `${findings.length} portability problem(s); move runtime-specific code behind src/runtime/:\n${report(findings)}`,
    )
  })

  it('the scanner catches what it should (self-test on a temporary tree)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pillion-portability-'))
    try {
      const src = path.join(dir, 'src')
      fs.mkdirSync(path.join(src, 'core'), { recursive: true })
      fs.mkdirSync(path.join(src, 'runtime'), { recursive: true })
      fs.writeFileSync(
        path.join(src, 'core', 'bad.ts'),
        [
          "import fs from 'node:fs'", // 1
          'const x = require("x")', // 2
          'const e = process.env.HOME', // 3
          "const b = Buffer.from('a')", // 4
          'const s = Bun.serve', // 5
          'const d = Deno.args', // 6
          "import { a } from './a'", // 7
          "const m = await import('../m.js')", // 8
          'const g = globalThis.process.pid', // 9
          "export { c } from './c'", // 10
          "// process.env in a comment is fine, and so is a URL: 'http://x/Bun.y'", // 11
          "import { ok } from './ok.ts'", // 12
          'const t = this.process.x + subprocess.y + myBuffer.z', // 13
          '/* Deno.exit() in a block comment */', // 14
        ].join('\n'),
      )
      fs.writeFileSync(path.join(src, 'runtime', 'node.ts'), "import fs from 'node:fs'\nexport const p = process.pid\nimport { x } from './x'\n")
      const found = scan(src).map((f) => `${f.file}:${f.line}`)
      assert.deepEqual(found, [
        'src/core/bad.ts:1',
        'src/core/bad.ts:2',
        'src/core/bad.ts:3',
        'src/core/bad.ts:4',
        'src/core/bad.ts:5',
        'src/core/bad.ts:6',
        'src/core/bad.ts:7',
        'src/core/bad.ts:8',
        'src/core/bad.ts:9',
        'src/core/bad.ts:10',
        'src/runtime/node.ts:3',
      ])
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
