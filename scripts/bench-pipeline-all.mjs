#!/usr/bin/env node
// `npm run bench:pipeline [-- REQUESTS]`: scripts/bench-pipeline.ts under Bun, then under Node (tsx).
import { spawnSync } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const script = join(ROOT, 'scripts/bench-pipeline.ts')
const args = process.argv.slice(2)
let failed = 0
for (const [command, ...prefix] of [[join(ROOT, 'node_modules/.bin/bun')], [process.execPath, '--import', 'tsx']]) {
  const { status } = spawnSync(command, [...prefix, script, ...args], { cwd: ROOT, stdio: 'inherit' })
  if (status !== 0) failed = status ?? 1
  console.log()
}
process.exit(failed)
