// Every TOML example in README.md and docs/*.md loads with the loader `pillion check` uses, and every
// relative link in them leads to a file that exists (and to a heading there, when it names one).
// The rules for examples (also in docs/development.md):
//
// - A ```toml block that has a `[gateway]` table is a complete file and must load as it stands.
// - Any other ```toml block is a fragment: HEAD below is put in front of it, and the whole must load.
//   HEAD ends with the route "inbound", so a fragment's `[routes.retry]`, `[[routes.rate_limit]]` or
//   bare keys (`ip = { ... }`) configure that route. A fragment that names an upstream other than
//   `local`, or a route other than `inbound`, brings its own.
// - A ```toml invalid block shows a mistake: it is completed the same way and must be refused with a
//   ConfigError.
// - A ```toml base block is a locked base policy ([control] base): it must load as a base, alone.
// - A failure names the document and the line of the block's opening fence.
//
// Files a fragment names (keys files, certificates) need not exist: the loader only resolves their paths.
// `${env:NAME}` references get DOC_ENV below (any other name is unset), and `${file:PATH}` ones read
// "example-secret" whatever the path.
import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { describe, test } from 'node:test'
import { loadBaseText } from '../../../src/config/base-file.ts'
import { loadConfigText } from '../../../src/config/load.ts'

const ROOT = resolve(import.meta.dirname, '../../..')

const DOC_ENV: Record<string, string> = { PAYMENTS_URL: 'http://127.0.0.1:3101', REDIS_PASSWORD: 'example-password', API_TOKEN: 'example-token' }
const secrets = { env: (name: string) => DOC_ENV[name], readFile: () => 'example-secret\n' }

/** What a fragment is completed with; docs/development.md shows it, and a test below keeps the two in step. */
const HEAD = `[gateway]
service = "orders"

[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"

[listeners.egress]
listen = "127.0.0.1:0"
direction = "egress"

[upstreams.local]
endpoints = ["http://127.0.0.1:3000"]

[[routes]]
name = "inbound"
listener = "ingress"
path = "/*"
upstream = "local"
`

/** Links that may point at a file someone else is writing. */
const MAY_BE_MISSING = new Set(['docs/architecture.md'])

interface Block {
  /** One-based line of the opening fence. */
  line: number
  info: string[]
  text: string
}

interface Doc {
  /** Path from the repository root, with forward slashes. */
  file: string
  text: string
}

function documents(): Doc[] {
  const files = ['README.md']
  const docsDir = join(ROOT, 'docs')
  if (existsSync(docsDir)) {
    for (const name of readdirSync(docsDir, { recursive: true, encoding: 'utf8' }).sort()) {
      if (name.endsWith('.md')) files.push(`docs/${name.split('\\').join('/')}`)
    }
  }
  return files.map((file) => ({ file, text: readFileSync(join(ROOT, file), 'utf8') }))
}

const FENCE = /^ {0,3}(`{3,}|~{3,})(.*)$/

/** Fenced code blocks, with their info string split into words (`toml invalid` -> ["toml", "invalid"]). */
function fencedBlocks(markdown: string): Block[] {
  const lines = markdown.split(/\r?\n/)
  const blocks: Block[] = []
  let open: { fence: string; line: number; info: string[]; body: string[] } | undefined
  lines.forEach((line, index) => {
    const match = FENCE.exec(line)
    if (open === undefined) {
      if (match) open = { fence: match[1]!, line: index + 1, info: match[2]!.trim().split(/\s+/).filter(Boolean), body: [] }
      return
    }
    const fence = open.fence
    if (match && match[1]!.startsWith(fence[0]!) && match[1]!.length >= fence.length && match[2]!.trim() === '') {
      blocks.push({ line: open.line, info: open.info, text: open.body.join('\n') + '\n' })
      open = undefined
    } else open.body.push(line)
  })
  if (open !== undefined) blocks.push({ line: open.line, info: ['unclosed'], text: open.body.join('\n') })
  return blocks
}

const GATEWAY_TABLE = /^\s*\[\s*gateway\s*\]\s*(#.*)?$/m

/** The text the loader gets for a block: as it stands when it is a complete file, else after HEAD. */
function policyText(block: string): { complete: boolean; text: string } {
  const complete = GATEWAY_TABLE.test(block)
  return { complete, text: complete ? block : `${HEAD}\n${block}` }
}

/** The loader's problems, with a syntax error's line counted in the document rather than in HEAD + block. */
function describeProblems(problems: unknown[], block: Block & { where: string }, complete: boolean): string {
  const headLines = complete ? 0 : HEAD.split('\n').length // HEAD's lines, then the blank line joining them
  return problems
    .map((problem) => {
      const { path, message, line } = problem as { path: string; message: string; line?: number }
      if (line === undefined) return `  ${path === '' ? '' : `${path}: `}${message}`
      const inBlock = line - headLines
      return inBlock >= 1 ? `  line ${block.line + inBlock}: ${message}` : `  in HEAD, line ${line}: ${message}`
    })
    .join('\n')
}

/** By name, not instanceof: the loader's entry point is the only module path this test relies on. */
function isConfigError(error: unknown): error is Error & { problems: unknown[] } {
  return error instanceof Error && error.name === 'ConfigError' && Array.isArray((error as { problems?: unknown }).problems)
}

/** Markdown without its fenced blocks and inline code, so links are only looked for in prose. */
function prose(markdown: string): Array<{ line: number; text: string }> {
  const out: Array<{ line: number; text: string }> = []
  let fence: string | undefined
  markdown.split(/\r?\n/).forEach((line, index) => {
    const match = FENCE.exec(line)
    if (fence === undefined && match) fence = match[1]!
    else if (fence !== undefined && match && match[1]!.startsWith(fence[0]!) && match[1]!.length >= fence.length && match[2]!.trim() === '') fence = undefined
    else if (fence === undefined) out.push({ line: index + 1, text: line.replace(/(`+)[^`]*?\1/g, '') })
  })
  return out
}

/** Inline links and images `[text](target "title")`, and reference definitions `[id]: target`. */
function links(markdown: string): Array<{ line: number; target: string }> {
  const found: Array<{ line: number; target: string }> = []
  for (const { line, text } of prose(markdown)) {
    for (const match of text.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) found.push({ line, target: match[1]! })
    const definition = /^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(\s|$)/.exec(text)
    if (definition) found.push({ line, target: definition[1]! })
  }
  return found
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>()
  const result = new Set<string>()
  let fence: string | undefined
  for (const line of markdown.split(/\r?\n/)) {
    const match = FENCE.exec(line)
    if (fence === undefined && match) fence = match[1]!
    else if (fence !== undefined && match && match[1]!.startsWith(fence[0]!) && match[1]!.length >= fence.length && match[2]!.trim() === '') fence = undefined
    if (fence !== undefined || match) continue
    const heading = /^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)
    if (!heading) continue
    const text = heading[1]!.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/<[^>]+>/g, '')
    const base = text.toLowerCase().replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '').replace(/ /g, '-')
    const count = seen.get(base) ?? 0
    seen.set(base, count + 1)
    result.add(count === 0 ? base : `${base}-${count}`)
  }
  return result
}

const docs = documents()

describe('TOML examples in the docs load as `pillion check` loads them', () => {
  const tomlBlocks = docs.flatMap((doc) =>
    fencedBlocks(doc.text)
      .filter((block) => block.info[0] === 'toml')
      .map((block) => ({ ...block, where: `${doc.file}:${block.line}` })),
  )

  test('the docs hold TOML examples, and the pages they are split into', () => {
    assert.ok(tomlBlocks.length >= 30, `only ${tomlBlocks.length} TOML blocks found`)
    for (const page of ['README.md', 'configuration.md', 'resilience.md', 'traffic.md', 'security.md', 'observability.md']) {
      const file = page === 'README.md' ? page : `docs/${page}`
      assert.ok(docs.some((doc) => doc.file === file), `${file} is missing`)
    }
  })

  test('HEAD loads by itself, and docs/development.md shows it as it is', () => {
    loadConfigText(HEAD, 'HEAD')
    const development = docs.find((doc) => doc.file === 'docs/development.md')
    assert.ok(development?.text.includes('```toml\n' + HEAD + '```'), 'docs/development.md must show HEAD verbatim, in a ```toml block')
  })

  for (const block of tomlBlocks) {
    const unknown = block.info.slice(1).filter((word) => word !== 'invalid' && word !== 'base')
    const invalid = block.info.includes('invalid')
    if (block.info.includes('base')) {
      test(`${block.where} (base)`, () => {
        const load = () => loadBaseText(block.text, block.where, secrets, (path) => path)
        if (invalid) assert.throws(load, (error: unknown) => isConfigError(error), `${block.where}: marked invalid, but it loads as a base`)
        else load()
      })
      continue
    }
    const { complete, text } = policyText(block.text)
    const kind = `${complete ? 'complete file' : 'fragment'}${invalid ? ', invalid' : ''}`
    test(`${block.where} (${kind})`, () => {
      assert.deepEqual(unknown, [], `${block.where}: unknown info string words ${unknown.join(' ')} (only "invalid" and "base" are known)`)
      if (invalid) {
        assert.throws(
          () => loadConfigText(text, block.where, secrets),
          (error: unknown) => isConfigError(error),
          `${block.where}: marked invalid, but it loads (or fails with something other than a ConfigError)`,
        )
        return
      }
      try {
        loadConfigText(text, block.where, secrets)
      } catch (error) {
        if (!isConfigError(error)) throw error // the loader itself failed, not the example
        const how = complete ? 'as a complete file' : 'after HEAD (see test/unit/docs/examples.test.ts)'
        assert.fail(`the TOML block at ${block.where} does not load ${how}:\n${describeProblems(error.problems, block, complete)}`)
      }
    })
  }
})

describe('relative links in the docs lead somewhere', () => {
  for (const doc of docs) {
    test(doc.file, () => {
      const broken: string[] = []
      for (const { line, target } of links(doc.text)) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue // http:, https:, mailto:
        const [pathPart = '', anchor] = target.split('#', 2)
        const file = pathPart === '' ? doc.file : relative(ROOT, resolve(ROOT, dirname(doc.file), decodeURI(pathPart))).split('\\').join('/')
        const where = `${doc.file}:${line}: ${target}`
        if (!existsSync(join(ROOT, file))) {
          if (!MAY_BE_MISSING.has(file)) broken.push(`${where}: no file ${file}`)
          continue
        }
        if (anchor === undefined || anchor === '' || !file.endsWith('.md') || statSync(join(ROOT, file)).isDirectory()) continue
        if (!anchors(readFileSync(join(ROOT, file), 'utf8')).has(anchor)) broken.push(`${where}: no heading with anchor #${anchor} in ${file}`)
      }
      assert.deepEqual(broken, [], `broken links:\n${broken.join('\n')}`)
    })
  }
})
