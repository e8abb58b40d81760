#!/usr/bin/env node
// `npm run test:chaos`: the chaos suite (test/chaos/), on node, bun and the binary unless
// PILLION_CHAOS_TARGETS says otherwise. Builds dist/ first (PILLION_SKIP_BUILD=1 skips it), runs the
// tests one file at a time, and writes what they measured to reports/chaos.json, also as a Markdown
// table (`--markdown` prints it again from the last report without running anything).
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const REPORT = path.join(ROOT, 'reports', 'chaos.json')

function run(cmd, args, env) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: ROOT, stdio: 'inherit', env })
    child.on('error', () => resolve(1))
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)))
  })
}

function markdown(report) {
  const rows = report.figures.map(({ target, scenario, ...figures }) => {
    const text = Object.entries(figures)
      .map(([key, value]) => `${key.replaceAll('_', ' ')}: ${typeof value === 'object' ? Object.entries(value).map(([k, v]) => `${k} ×${v}`).join(', ') : value}`)
      .join('; ')
    return `| ${scenario} | ${target} | ${text} |`
  })
  return ['| scenario | target | figures |', '|---|---|---|', ...rows].join('\n')
}

async function main() {
  if (process.argv.includes('--markdown')) {
    console.log(markdown(JSON.parse(fs.readFileSync(REPORT, 'utf8'))))
    return 0
  }
  if (process.env.PILLION_SKIP_BUILD !== '1') {
    const code = await run(process.execPath, [path.join(ROOT, 'scripts', 'build.mjs')], process.env)
    if (code !== 0) return code
  }
  const figuresFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'pillion-chaos-')), 'figures.jsonl')
  const files = fs
    .readdirSync(path.join(ROOT, 'test', 'chaos'))
    .filter((name) => name.endsWith('.test.ts'))
    .sort()
    .map((name) => path.join('test', 'chaos', name))
  const startedAt = Date.now()
  const code = await run(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', ...files], { ...process.env, PILLION_CHAOS_FIGURES: figuresFile })
  const figures = fs.existsSync(figuresFile) ? fs.readFileSync(figuresFile, 'utf8').trim().split('\n').filter(Boolean).map((line) => JSON.parse(line)) : []
  const report = {
    date: new Date().toISOString(),
    passed: code === 0,
    seconds: Math.round((Date.now() - startedAt) / 1000),
    machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${os.platform()} ${os.arch()}`,
    node: process.version,
    targets: process.env.PILLION_CHAOS_TARGETS ?? 'node,bun,binary',
    figures,
  }
  fs.mkdirSync(path.dirname(REPORT), { recursive: true })
  fs.writeFileSync(REPORT, `${JSON.stringify(report, null, 2)}\n`)
  console.log(`\nchaos: ${report.passed ? 'passed' : 'FAILED'} in ${report.seconds}s; figures in ${path.relative(ROOT, REPORT)}\n\n${markdown(report)}`)
  return code
}

process.exit(await main())
