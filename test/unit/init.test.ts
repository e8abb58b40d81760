import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { loadConfigText } from '../../src/config/load.ts'
import { init, STARTER_DEFAULTS, starterPolicy } from '../../src/init.ts'
import { processHost } from '../../src/runtime/process-host.ts'

/** The real file calls of Node and Bun, and what the command printed. */
function host() {
  const out: string[] = []
  const err: string[] = []
  const { readTextFile, writeTextFile } = processHost()
  return { runtime: { readTextFile, writeTextFile, writeOut: (line: string) => void out.push(line), writeErr: (line: string) => void err.push(line) }, out, err }
}

describe('pillion init', () => {
  it('writes a starter that loads, with the defaults', () => {
    const config = loadConfigText(starterPolicy(STARTER_DEFAULTS), 'pillion.toml')
    assert.equal(config.gateway.service, 'my-service')
    assert.deepEqual(config.listeners.ingress, { name: 'ingress', host: '0.0.0.0', port: 8080, direction: 'ingress' })
    assert.deepEqual(config.upstreams.local!.endpoints.map((endpoint) => endpoint.url), ['http://127.0.0.1:3000'])
    assert.equal(config.routes.length, 1)
    assert.equal(config.routes[0]!.upstream, 'local')
  })

  it('every commented-out key loads too, once uncommented', () => {
    const text = starterPolicy(STARTER_DEFAULTS).replace(/^# ((\[|[a-z_]+ = ).*)$/gm, '$1')
    assert.notEqual(text, starterPolicy(STARTER_DEFAULTS))
    const config = loadConfigText(text, 'pillion.toml')
    assert.deepEqual(config.gateway.probes, { host: '0.0.0.0', port: 9902 })
    assert.equal(config.listeners.egress?.direction, 'egress')
    assert.ok(config.routes[0]!.policies.rateLimits)
  })

  it('applies --service, --upstream, --listen and -c, and the file passes the loader', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pillion-init-'))
    const file = join(dir, 'edge.toml')
    const { runtime, out, err } = host()
    const code = await init(runtime, ['-c', file, '--service', 'orders', '--upstream=http://127.0.0.1:4000/base', '--listen', '[::]:9080'])
    assert.equal(code, 0, err.join('\n'))
    assert.match(out.join('\n'), /wrote .*edge\.toml/)
    const config = loadConfigText(readFileSync(file, 'utf8'), file)
    assert.equal(config.gateway.service, 'orders')
    assert.deepEqual({ host: config.listeners.ingress!.host, port: config.listeners.ingress!.port }, { host: '::', port: 9080 })
    assert.match(config.upstreams.local!.endpoints[0]!.url, /^http:\/\/127\.0\.0\.1:4000\/base\/?$/)
  })

  it('never overwrites a file: exit 1 and the file as it was', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pillion-init-'))
    const file = join(dir, 'pillion.toml')
    writeFileSync(file, 'mine')
    const { runtime, out, err } = host()
    assert.equal(await init(runtime, ['-c', file]), 1)
    assert.equal(readFileSync(file, 'utf8'), 'mine')
    assert.deepEqual(out, [])
    assert.match(err.join('\n'), /already exists; not overwriting it/)
  })

  it('creates only: a file that appears after the check is not replaced either', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pillion-init-'))
    const file = join(dir, 'pillion.toml')
    const { runtime, err } = host()
    const racing = {
      ...runtime,
      readTextFile: async (path: string) => {
        writeFileSync(file, 'theirs') // someone else's file lands between the check and the write
        return runtime.readTextFile(`${path}.absent`)
      },
    }
    assert.equal(await init(racing, ['-c', file]), 1)
    assert.equal(readFileSync(file, 'utf8'), 'theirs')
    assert.match(err.join('\n'), /already exists/)
  })

  it('refuses options that make an invalid policy, naming the key, and writes nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pillion-init-'))
    const file = join(dir, 'pillion.toml')
    const { runtime, err } = host()
    assert.equal(await init(runtime, ['-c', file, '--upstream', 'ftp://x']), 2)
    assert.match(err.join('\n'), /upstreams\.local\.endpoints\[0\]: expected an http:\/\/ or https:\/\/ URL/)
    assert.throws(() => readFileSync(file), /ENOENT/)
    assert.equal(await init(runtime, ['--port', '80']), 2)
    assert.match(err.at(-1)!, /unexpected argument "--port"/)
    assert.equal(await init(runtime, ['--listen']), 2)
    assert.match(err.at(-1)!, /--listen needs a value/)
  })
})
