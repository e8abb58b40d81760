#!/usr/bin/env node
// Builds Pillion.
//
//   node scripts/build.mjs            dist/pillion.js + the executable for this machine
//   node scripts/build.mjs --all      ... + executables for every platform in ALL_TARGETS
//
// dist/pillion.js   one ESM bundle (dependencies included) that runs under `node`, `bun` and `deno run -A`;
//                   it is the npm `bin`.
// dist/SHA256SUMS   the SHA-256 of dist/pillion.js and of every executable in dist, for `sha256sum -c SHA256SUMS`.
// dist/pillion-<t>  `bun build --compile` single executables. The host one is made by the installed bun;
//                   the others are cross-compiled offline from the `@oven/bun-<t>` npm package of exactly
//                   the installed bun version (fetched with `npm pack`, the only registry reachable),
//                   cached in node_modules/.cache/pillion-bun-targets/.
//
// Options:
//   --all                 build every target in ALL_TARGETS
//   --target=a,b          build only these targets (names as in TARGETS), plus dist/pillion.js
//   --js-only             only dist/pillion.js
//   --no-bytecode         compile executables without the bytecode cache (slower start-up)
//   --no-bytecode-order   keep the bytecode in bundle order: no training run (see below)
//   --entry=FILE          entry module of both (default src/main.ts for dist/pillion.js and src/main-bun.ts,
//                         the same with only the Bun adapter, for executables; env PILLION_BUILD_ENTRY)
//   --outdir=DIR          output directory (default dist; env PILLION_BUILD_OUTDIR)
//   --help
//
// Bytecode order: the host executable is compiled once and run by scripts/bytecode-order.mjs (a second of
// requests through a local upstream, loopback only), which writes the functions it used; every executable
// is then compiled with `--bytecode-order` so those come first, and a running gateway touches fewer pages
// of its bytecode (about 3 MB less RSS; docs/performance.md). Only for the default entry, as the run
// needs `pillion run`; if the run fails the build warns and keeps the plain order.
//
// The version from package.json is compiled in as the identifier PILLION_VERSION (`--define`); code reads it as
//   declare const PILLION_VERSION: string | undefined
//   const version = typeof PILLION_VERSION !== 'undefined' ? PILLION_VERSION : '0.0.0-dev'
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

/** Every target we know how to make. `pkg` is the npm package whose bin/bun is the target runtime. */
const TARGETS = {
  'linux-x64': { bun: 'bun-linux-x64', pkg: '@oven/bun-linux-x64', exe: 'bin/bun' },
  'linux-x64-baseline': { bun: 'bun-linux-x64-baseline', pkg: '@oven/bun-linux-x64-baseline', exe: 'bin/bun' },
  'linux-x64-musl': { bun: 'bun-linux-x64-musl', pkg: '@oven/bun-linux-x64-musl', exe: 'bin/bun' },
  'linux-arm64': { bun: 'bun-linux-arm64', pkg: '@oven/bun-linux-aarch64', exe: 'bin/bun' },
  'linux-arm64-musl': { bun: 'bun-linux-arm64-musl', pkg: '@oven/bun-linux-aarch64-musl', exe: 'bin/bun' },
  'darwin-arm64': { bun: 'bun-darwin-arm64', pkg: '@oven/bun-darwin-aarch64', exe: 'bin/bun' },
  'darwin-x64': { bun: 'bun-darwin-x64', pkg: '@oven/bun-darwin-x64', exe: 'bin/bun' },
  'windows-x64': { bun: 'bun-windows-x64', pkg: '@oven/bun-windows-x64', exe: 'bin/bun.exe', suffix: '.exe' },
}
const ALL_TARGETS = ['linux-x64', 'linux-arm64', 'linux-x64-musl', 'darwin-arm64', 'darwin-x64', 'windows-x64']

/** Flags shared by every executable. */
const COMPILE_FLAGS = ['--compile', '--minify', '--no-compile-autoload-dotenv', '--no-compile-autoload-bunfig']
const BYTECODE_FLAGS = ['--bytecode', '--format=esm'] // esm: the cjs default rejects top-level await

class BuildError extends Error {}
const fail = (message) => {
  throw new BuildError(message)
}

function parseArgs(argv) {
  const o = {
    all: false,
    targets: null,
    jsOnly: false,
    bytecode: true,
    bytecodeOrder: true,
    entry: process.env.PILLION_BUILD_ENTRY || null,
    outdir: process.env.PILLION_BUILD_OUTDIR || 'dist',
  }
  for (const arg of argv) {
    const [k, v] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined]
    if (k === '--all') o.all = true
    else if (k === '--target' && v) o.targets = v.split(',').map((s) => s.trim()).filter(Boolean)
    else if (k === '--js-only') o.jsOnly = true
    else if (k === '--no-bytecode') o.bytecode = false
    else if (k === '--no-bytecode-order') o.bytecodeOrder = false
    else if (k === '--entry' && v) o.entry = v
    else if (k === '--outdir' && v) o.outdir = v
    else if (k === '--help' || k === '-h') {
      const head = fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 31)
      console.log(head.map((l) => l.replace(/^\/\/ ?/, '')).join('\n'))
      process.exit(0)
    } else fail(`unknown argument ${JSON.stringify(arg)} (see --help)`)
  }
  for (const t of o.targets ?? []) if (!TARGETS[t]) fail(`unknown target ${t}; known: ${Object.keys(TARGETS).join(', ')}`)
  return o
}

/** Name of this machine's target, e.g. linux-x64 or linux-x64-musl. */
function hostTarget() {
  const os = { linux: 'linux', darwin: 'darwin', win32: 'windows' }[process.platform]
  const arch = { x64: 'x64', arm64: 'arm64' }[process.arch]
  if (!os || !arch) return null
  let musl = false
  if (os === 'linux') {
    const header = process.report?.getReport?.()?.header
    musl = header !== undefined && !header.glibcVersionRuntime
  }
  return `${os}-${arch}${musl ? '-musl' : ''}`
}

function run(cmd, args, { capture = true, cwd = ROOT, env = process.env, shell = false } = {}) {
  const r = spawnSync(cmd, args, { cwd, env, shell, encoding: 'utf8', stdio: capture ? 'pipe' : 'inherit', maxBuffer: 64 << 20 })
  if (r.error) fail(`could not run ${cmd}: ${r.error.message}`)
  return r
}

function bunPath() {
  if (process.env.PILLION_BUN) return process.env.PILLION_BUN
  const p = process.platform === 'win32'
    ? path.join(ROOT, 'node_modules', 'bun', 'bin', 'bun.exe')
    : path.join(ROOT, 'node_modules', '.bin', 'bun')
  if (!fs.existsSync(p)) fail(`bun not found at ${p}; run \`npm install\` (devDependency "bun")`)
  return p
}

function bunVersion(bun) {
  const r = run(bun, ['--version'])
  const v = r.stdout.trim()
  if (r.status !== 0 || !/^\d+\.\d+\.\d+/.test(v)) {
    fail(`\`${bun} --version\` failed (${(r.stderr || r.stdout).trim()}); was bun's postinstall blocked? Try \`npm rebuild bun\``)
  }
  return v
}

/** Runs `bun build`, printing its output only when it fails. */
/** Compiles the host executable once, runs it to record the functions it uses, and returns the flag that lays them out first. */
function bytecodeOrder(bun, exeEntry, define, work) {
  const trainee = path.join(work, 'bytecode-order-run')
  const orders = path.join(work, 'bytecode-order')
  fs.mkdirSync(orders)
  bunBuild(bun, [exeEntry, ...COMPILE_FLAGS, ...BYTECODE_FLAGS, ...define, `--outfile=${trainee}`], 'the executable for the bytecode order run')
  const r = run(process.execPath, [path.join(ROOT, 'scripts/bytecode-order.mjs'), trainee, orders])
  fs.rmSync(trainee, { force: true })
  // The chain's functions first: its run uses most of what the bare route's does, and more.
  const files = ['chain.order', 'bare.order'].map((name) => path.join(orders, name))
  if (r.status === 0 && files.every((file) => fs.existsSync(file))) return [`--bytecode-order=${files.join(',')}`]
  console.warn(`build: warning: no bytecode order (the executable keeps the bundle's order):\n${(r.stderr || r.stdout).trim()}`)
  return []
}

function bunBuild(bun, args, what) {
  const r = run(bun, ['build', ...args], {
    // Never let bun fetch a target runtime by itself: every cross build passes --compile-executable-path.
    env: { ...process.env, BUN_COMPILE_TARGET_TARBALL_URL: 'http://127.0.0.1:9/no-downloads', NO_COLOR: '1' },
  })
  if (r.status !== 0) {
    process.stderr.write(r.stdout + r.stderr)
    fail(`bun build failed for ${what} (exit ${r.status ?? r.signal})`)
  }
}

function npmCommand() {
  const execPath = process.env.npm_execpath
  if (execPath && /\.[cm]?js$/.test(execPath) && fs.existsSync(execPath)) return [process.execPath, [execPath]]
  return [process.platform === 'win32' ? 'npm.cmd' : 'npm', []]
}

/** Returns the path of bin/bun from `@oven/bun-<target>@<version>`, fetching it with `npm pack` if not cached. */
function targetRuntime(target, version) {
  const { pkg, exe } = TARGETS[target]
  const cache = path.join(ROOT, 'node_modules', '.cache', 'pillion-bun-targets')
  const dir = path.join(cache, `${pkg.replace(/^@/, '').replace('/', '-')}-${version}`)
  const bin = path.join(dir, 'package', exe)
  const check = (d) => {
    const meta = JSON.parse(fs.readFileSync(path.join(d, 'package', 'package.json'), 'utf8'))
    if (meta.name !== pkg || meta.version !== version) fail(`${d} holds ${meta.name}@${meta.version}, expected ${pkg}@${version}`)
    if (!fs.existsSync(path.join(d, 'package', exe))) fail(`${pkg}@${version} has no ${exe}`)
  }
  if (fs.existsSync(bin)) {
    check(dir)
    return bin
  }
  fs.mkdirSync(cache, { recursive: true })
  const tmp = fs.mkdtempSync(path.join(cache, '.fetch-'))
  try {
    console.log(`build: fetching ${pkg}@${version} with npm pack`)
    const [npm, pre] = npmCommand()
    const r = run(npm, [...pre, 'pack', `${pkg}@${version}`, '--pack-destination', tmp, '--json', '--ignore-scripts', '--prefer-offline'], {
      cwd: tmp,
      shell: npm.endsWith('.cmd'), // Node refuses to spawn .cmd files without a shell
    })
    if (r.status !== 0) fail(`npm pack ${pkg}@${version} failed:\n${r.stderr.trim()}`)
    const tgz = fs.readdirSync(tmp).find((f) => f.endsWith('.tgz'))
    if (!tgz) fail(`npm pack ${pkg}@${version} produced no tarball`)
    const out = path.join(tmp, 'x')
    fs.mkdirSync(out)
    const t = run('tar', ['-xzf', path.join(tmp, tgz), '-C', out])
    if (t.status !== 0) fail(`extracting ${tgz} failed: ${t.stderr.trim()}`)
    check(out)
    fs.chmodSync(path.join(out, 'package', exe), 0o755)
    try {
      fs.renameSync(out, dir)
    } catch (e) {
      if (!fs.existsSync(bin)) throw e // else a concurrent build got there first
    }
    check(dir)
    return bin
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
}

/** Reads the first bytes to make sure the file is an executable of the expected kind. */
function checkExecutable(file, target) {
  const fd = fs.openSync(file, 'r')
  const b = Buffer.alloc(4)
  fs.readSync(fd, b, 0, 4, 0)
  fs.closeSync(fd)
  const kind = b.toString('latin1', 0, 4) === '\x7fELF' ? 'linux'
    : b.toString('latin1', 0, 2) === 'MZ' ? 'windows'
    : b.readUInt32LE(0) === 0xfeedfacf ? 'darwin'
    : 'unknown'
  if (!target.startsWith(kind)) fail(`${file} does not look like a ${target} executable (header ${b.toString('hex')})`)
  if (fs.statSync(file).size < 1 << 20) fail(`${file} is suspiciously small`)
}

/**
 * Writes outdir/SHA256SUMS (sha256sum's format) for dist/pillion.js and every executable there, the ones
 * this build made and any an earlier --target build left, so a partial build never drops a sum.
 */
function writeChecksums(outdir) {
  const names = fs.readdirSync(outdir).filter((name) => name === 'pillion.js' || /^pillion-[a-z0-9-]+(\.exe)?$/.test(name)).sort()
  const lines = names.map((name) => `${createHash('sha256').update(fs.readFileSync(path.join(outdir, name))).digest('hex')}  ${name}\n`)
  const file = path.join(outdir, 'SHA256SUMS')
  const tmp = `${file}.${process.pid}.tmp`
  fs.writeFileSync(tmp, lines.join(''))
  fs.renameSync(tmp, file)
  return file
}

function mib(bytes) {
  return `${(bytes / (1 << 20)).toFixed(1)} MiB`
}

function main() {
  const started = Date.now()
  const opts = parseArgs(process.argv.slice(2))
  const pkgJson = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
  const version = pkgJson.version
  const entry = path.resolve(ROOT, opts.entry ?? 'src/main.ts')
  const exeEntry = path.resolve(ROOT, opts.entry ?? 'src/main-bun.ts')
  for (const file of new Set([entry, exeEntry])) if (!fs.existsSync(file)) fail(`entry ${file} does not exist`)
  const outdir = path.resolve(ROOT, opts.outdir)
  const bun = bunPath()
  const bunVer = bunVersion(bun)
  const host = hostTarget()
  const define = ['--define', `PILLION_VERSION=${JSON.stringify(version)}`]

  let targets = []
  if (!opts.jsOnly) {
    if (opts.targets) targets = opts.targets
    else if (opts.all) targets = [...ALL_TARGETS]
    else if (host && TARGETS[host]) targets = [host]
    else console.warn(`build: warning: no known executable target for ${process.platform}-${process.arch}; only dist/pillion.js`)
    if (opts.all && host && TARGETS[host] && !targets.includes(host)) targets.unshift(host)
  }

  fs.mkdirSync(outdir, { recursive: true })
  // Build into a private directory, then rename into place: a concurrent test that is running the old
  // binary keeps its inode, and nobody ever sees a half-written file.
  const work = fs.mkdtempSync(path.join(outdir, '.build-'))
  const made = []
  try {
    // 1. dist/pillion.js
    const jsTmp = path.join(work, 'js')
    bunBuild(bun, [
      entry, '--target=node', '--format=esm', '--packages=bundle',
      '--banner=#!/usr/bin/env node', ...define, `--outfile=${path.join(jsTmp, 'pillion.js')}`,
    ], 'dist/pillion.js')
    const emitted = fs.readdirSync(jsTmp)
    if (emitted.length !== 1) fail(`expected one bundle file, bun emitted: ${emitted.join(', ')}`)
    const jsOut = path.join(outdir, 'pillion.js')
    fs.chmodSync(path.join(jsTmp, 'pillion.js'), 0o755)
    const syntax = run(process.execPath, ['--check', path.join(jsTmp, 'pillion.js')])
    if (syntax.status !== 0) fail(`node --check rejected the bundle:\n${syntax.stderr}`)
    fs.renameSync(path.join(jsTmp, 'pillion.js'), jsOut)
    made.push([jsOut, 'ESM bundle for node / bun / deno'])

    // 2. executables
    const orderFlags = opts.bytecode && opts.bytecodeOrder && opts.entry === null && targets.includes(host) ? bytecodeOrder(bun, exeEntry, define, work) : []
    for (const target of targets) {
      const t = TARGETS[target]
      const name = `pillion-${target}${t.suffix ?? ''}`
      const tmpOut = path.join(work, name)
      const args = [exeEntry, ...COMPILE_FLAGS, ...(opts.bytecode ? [...BYTECODE_FLAGS, ...orderFlags] : []), ...define]
      if (target !== host) args.push(`--target=${t.bun}`, `--compile-executable-path=${targetRuntime(target, bunVer)}`)
      args.push(`--outfile=${tmpOut}`)
      bunBuild(bun, args, name)
      if (!fs.existsSync(tmpOut)) fail(`bun build reported success but ${tmpOut} is missing`)
      checkExecutable(tmpOut, target)
      const out = path.join(outdir, name)
      fs.renameSync(tmpOut, out)
      made.push([out, `${target === host ? 'host' : 'cross'} executable, bun ${bunVer}${opts.bytecode ? `, bytecode${orderFlags.length > 0 ? ' (ordered)' : ''}` : ''}`])
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true })
  }
  made.push([writeChecksums(outdir), 'sha256sum -c SHA256SUMS'])

  console.log(`build: pillion ${version} (bun ${bunVer}) in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  for (const [file, note] of made) {
    const rel = path.relative(process.cwd(), file)
    const shown = rel.startsWith('..') || path.isAbsolute(rel) ? file : rel
    console.log(`  ${shown.padEnd(34)} ${mib(fs.statSync(file).size).padStart(10)}  ${note}`)
  }
}

try {
  main()
} catch (e) {
  if (e instanceof BuildError) {
    console.error(`build: error: ${e.message}`)
  } else {
    console.error('build: unexpected error:', e)
  }
  process.exit(1)
}
