#!/usr/bin/env node
// `npm test`: builds dist/ (skip with PILLION_SKIP_BUILD=1), then runs the unit and e2e suites with node:test
// under tsx, one file at a time. Exits with the test runner's exit code.
//
//   npm test                          everything
//   npm test -- proxy                 only test files whose path contains "proxy"
//   npm test -- test/unit/x.test.ts   only that file
//   npm test -- --test-name-pattern=retry   other node flags are passed through to `node --test`
//
// Environment: PILLION_SKIP_BUILD=1 skips the build; PILLION_BUILD_ARGS="--js-only" is passed to the build.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const SUITES = ['test/unit', 'test/e2e']

/** Test files under dir, in every subfolder (test/unit mirrors src/'s folders). */
function listTests(dir) {
  const abs = path.join(ROOT, dir)
  if (!fs.existsSync(abs)) return []
  return fs
    .readdirSync(abs, { withFileTypes: true, recursive: true })
    .filter((d) => d.isFile() && d.name.endsWith('.test.ts'))
    .map((d) => path.relative(ROOT, path.join(d.parentPath ?? d.path, d.name)).split(path.sep).join('/'))
    .sort()
}

/** Runs a child with inherited stdio; resolves to its exit code (signals become 128+n style codes). */
function run(cmd, args, env = process.env) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: ROOT, stdio: 'inherit', env })
    const forward = (sig) => child.kill(sig)
    process.on('SIGINT', forward)
    process.on('SIGTERM', forward)
    child.on('error', (e) => {
      console.error(`test: could not start ${cmd}: ${e.message}`)
      resolve(1)
    })
    child.on('exit', (code, signal) => {
      process.off('SIGINT', forward)
      process.off('SIGTERM', forward)
      resolve(code ?? (signal ? 128 + ({ SIGINT: 2, SIGTERM: 15, SIGKILL: 9 }[signal] ?? 1) : 1))
    })
  })
}

async function main() {
  const extra = process.argv.slice(2)
  const flags = extra.filter((a) => a.startsWith('-'))
  const filters = extra.filter((a) => !a.startsWith('-'))

  const all = SUITES.flatMap(listTests)
  let files = all
  if (filters.length > 0) {
    files = []
    for (const f of filters) {
      if (fs.existsSync(path.resolve(ROOT, f)) && fs.statSync(path.resolve(ROOT, f)).isFile()) {
        files.push(path.relative(ROOT, path.resolve(ROOT, f)).split(path.sep).join('/'))
      } else {
        files.push(...all.filter((t) => t.includes(f)))
      }
    }
    files = [...new Set(files)]
  }
  if (files.length === 0) {
    console.error(filters.length > 0 ? `test: no test file matches ${filters.join(' ')}` : 'test: no test files found')
    return 1
  }

  if (process.env.PILLION_SKIP_BUILD !== '1') {
    const buildArgs = (process.env.PILLION_BUILD_ARGS ?? '').split(/\s+/).filter(Boolean)
    const code = await run(process.execPath, [path.join(ROOT, 'scripts', 'build.mjs'), ...buildArgs])
    if (code !== 0) {
      console.error(`test: build failed (exit ${code}); set PILLION_SKIP_BUILD=1 to run tests without building`)
      return code
    }
  }

  const args = ['--import', 'tsx', '--test', '--test-concurrency=1', ...flags, ...files]
  return run(process.execPath, args)
}

process.exitCode = await main()
