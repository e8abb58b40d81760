// The npm package: `npm pack`, install the tarball into an empty folder, and run `pillion version` and
// `pillion check` from it under Node, as `npx pillion` would. The pack skips `prepack` (the build of
// dist/pillion.js): the suite builds before it runs, and a test must not rebuild what others are running.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { promisify } from 'node:util'
import { ROOT, tempDir } from './harness.ts'

const run = promisify(execFile)
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm'
const BUNDLE = join(ROOT, 'dist/pillion.js')

/** Errors that mean the registry cannot be reached from here, not that the package is wrong. */
const UNREACHABLE = /ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|network request to .* failed/

const POLICY = `
[gateway]
service = "packaged"

[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"

[upstreams.local]
endpoints = ["http://127.0.0.1:3000"]

[[routes]]
listener = "ingress"
path = "/*"
upstream = "local"
`

let bundle: string | undefined
try {
  bundle = readFileSync(BUNDLE, 'utf8')
} catch {}

describe('npm package', { skip: bundle === undefined ? `${BUNDLE} not built (npm run build)` : undefined, timeout: 90_000 }, () => {
  it('package.json publishes the bundle as its bin, built on prepack', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))
    assert.equal(pkg.private, undefined, 'a private package cannot be published')
    assert.deepEqual(pkg.bin, { pillion: 'dist/pillion.js' })
    assert.ok(pkg.files.includes('dist/pillion.js'))
    assert.equal(pkg.scripts.prepack, 'node scripts/build.mjs --js-only')
    assert.equal(pkg.license, 'Apache-2.0')
    assert.match(readFileSync(join(ROOT, 'LICENSE'), 'utf8'), /Apache License\s+Version 2\.0, January 2004[\s\S]*END OF TERMS AND CONDITIONS/)
    assert.ok(bundle!.startsWith('#!/usr/bin/env node\n'), 'the bin needs a shebang')
  })

  it('npm pack, install the tarball, run pillion version and pillion check', async (t) => {
    const packed = tempDir()
    const { stdout } = await run(NPM, ['pack', '--ignore-scripts', '--json', '--pack-destination', packed], { cwd: ROOT, timeout: 30_000 })
    const [info] = JSON.parse(stdout) as Array<{ filename: string; files: Array<{ path: string }> }>
    const files = info!.files.map((file) => file.path).sort()
    assert.deepEqual(files.filter((file) => !file.startsWith('policies/')), ['LICENSE', 'README.md', 'dist/pillion.js', 'package.json', 'schema/pillion.schema.json'])
    assert.ok(files.includes('policies/sidecar.toml'))

    const app = tempDir()
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'uses-pillion', version: '1.0.0', private: true }))
    try {
      await run(NPM, ['install', '--no-audit', '--no-fund', '--prefer-offline', '--ignore-scripts', join(packed, info!.filename.replace(/^.*\//, ''))], {
        cwd: app,
        timeout: 45_000,
      })
    } catch (error) {
      const stderr = String((error as { stderr?: string }).stderr ?? error)
      if (UNREACHABLE.test(stderr)) return t.skip(`the npm registry cannot be reached to install the dependencies: ${stderr.split('\n').find((line) => UNREACHABLE.test(line))}`)
      throw error
    }

    // The bin link runs the bundle through its shebang, as npx does.
    const pillion = join(app, 'node_modules/.bin/pillion')
    const version = await run(pillion, ['version'], { cwd: app, timeout: 10_000 })
    assert.match(version.stdout, /^pillion \d+\.\d+\.\d+ \(node /)
    writeFileSync(join(app, 'pillion.toml'), POLICY)
    const checked = await run(pillion, ['check', 'pillion.toml'], { cwd: app, timeout: 10_000 })
    assert.match(checked.stdout, /pillion\.toml: ok/)
    const sidecar = await run(pillion, ['check', join(app, 'node_modules/pillion/policies/sidecar.toml')], { cwd: app, timeout: 10_000 })
    assert.match(sidecar.stdout, /sidecar\.toml: ok/)
  })
})
