// Imports point one way: no cycle between files (type-only imports included) and none between the
// top-level folders of src/, whose order is written down in LAYERS (docs/architecture.md explains it).
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'

const SRC = path.resolve(import.meta.dirname, '..', '..', 'src')

/** Lowest first: a folder may import only from folders before it. Files at src/ itself are entry points. */
export const LAYERS = ['core', 'upstream', 'proxy', 'observability', 'listener', 'policies', 'config', 'admin', 'control', 'runtime', 'gateway']

const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(['"])(\.{1,2}\/[^'"]*)\1/g

function listTs(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => path.join(entry.parentPath, entry.name))
}

/** Every relative import of every file, type-only and dynamic ones included, as absolute paths. */
export function importGraph(srcDir: string): Map<string, string[]> {
  const graph = new Map<string, string[]>()
  for (const file of listTs(srcDir)) {
    const text = fs.readFileSync(file, 'utf8')
    const targets = [...text.matchAll(SPECIFIER)].map((match) => path.resolve(path.dirname(file), match[2]!))
    graph.set(file, targets.filter((target) => target.startsWith(srcDir + path.sep)))
  }
  return graph
}

/** Tarjan's strongly connected components; each one with more than one file (or a self-import) is a cycle. */
export function cycles(graph: Map<string, string[]>): string[][] {
  let counter = 0
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: string[] = []
  const onStack = new Set<string>()
  const found: string[][] = []
  const visit = (node: string): void => {
    index.set(node, counter)
    low.set(node, counter++)
    stack.push(node)
    onStack.add(node)
    for (const next of graph.get(node) ?? []) {
      if (!index.has(next)) {
        visit(next)
        low.set(node, Math.min(low.get(node)!, low.get(next)!))
      } else if (onStack.has(next)) low.set(node, Math.min(low.get(node)!, index.get(next)!))
    }
    if (low.get(node) !== index.get(node)) return
    const component: string[] = []
    let member: string
    do {
      member = stack.pop()!
      onStack.delete(member)
      component.push(member)
    } while (member !== node)
    if (component.length > 1 || (graph.get(node) ?? []).includes(node)) found.push(component.sort())
  }
  for (const node of graph.keys()) if (!index.has(node)) visit(node)
  return found
}

function folderOf(srcDir: string, file: string): string | undefined {
  const parts = path.relative(srcDir, file).split(path.sep)
  return parts.length > 1 ? parts[0] : undefined
}

/** Imports from a folder to one at its level or above it in LAYERS (or to a folder LAYERS does not know). */
export function upwardImports(srcDir: string, graph: Map<string, string[]>, layers = LAYERS): string[] {
  const wrong: string[] = []
  const rel = (file: string) => path.relative(srcDir, file).split(path.sep).join('/')
  for (const [file, targets] of graph) {
    const from = folderOf(srcDir, file)
    for (const target of targets) {
      const to = folderOf(srcDir, target)
      if (from === undefined || from === to) continue
      const rank = (folder: string | undefined) => (folder === undefined ? layers.length : layers.indexOf(folder))
      if (rank(from) === -1 || rank(to) === -1 || rank(to) >= rank(from)) wrong.push(`${rel(file)} -> ${rel(target)}`)
    }
  }
  return wrong
}

describe('imports of src/', () => {
  const graph = importGraph(SRC)

  it('has no import cycle between files, type-only imports included', () => {
    const rel = (file: string) => path.relative(SRC, file).split(path.sep).join('/')
    const found = cycles(graph).map((component) => component.map(rel).join(' <-> '))
    assert.deepEqual(found, [], `import cycles:\n${found.join('\n')}`)
  })

  it('imports only downward between top-level folders, in the order of LAYERS', () => {
    const folders = fs.readdirSync(SRC, { withFileTypes: true }).filter((entry) => entry.isDirectory()).map((entry) => entry.name)
    assert.deepEqual(folders.filter((folder) => !LAYERS.includes(folder)), [], 'every folder of src/ has its place in LAYERS')
    const wrong = upwardImports(SRC, graph)
    assert.deepEqual(wrong, [], `imports against the layer order (${LAYERS.join(' < ')}):\n${wrong.join('\n')}`)
  })

  it('finds a cycle and an upward import when there is one', () => {
    const dir = fs.mkdtempSync(path.join(fs.realpathSync(process.env.TMPDIR ?? '/tmp'), 'imports-'))
    try {
      fs.mkdirSync(path.join(dir, 'core'))
      fs.mkdirSync(path.join(dir, 'policies'))
      fs.writeFileSync(path.join(dir, 'core', 'a.ts'), "import type { B } from '../policies/b.ts'\nexport type A = B\n")
      fs.writeFileSync(path.join(dir, 'policies', 'b.ts'), "import type { A } from '../core/a.ts'\nexport type B = A | 1\n")
      const small = importGraph(dir)
      assert.equal(cycles(small).length, 1)
      assert.deepEqual(upwardImports(dir, small), ['core/a.ts -> policies/b.ts'])
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
