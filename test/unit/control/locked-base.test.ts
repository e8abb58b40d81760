import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { ControlConfig } from '../../../src/config/control.ts'
import type { Runtime } from '../../../src/core/host.ts'
import { openLockedBase } from '../../../src/control/locked-base.ts'

/** Files in memory; a missing one fails to read as a real one would. */
function memoryHost(files: Record<string, string>) {
  const read = (path: string) => {
    const text = files[path]
    if (text === undefined) throw new Error(`ENOENT: ${path}`)
    return text
  }
  return {
    files,
    host: {
      readTextFile: async (path: string) => read(path),
      readTextFileSync: read,
      writeTextFile: async (path: string, text: string) => void (files[path] = text),
      watchFile: () => () => {},
      env: () => undefined,
    } as unknown as Pick<Runtime, 'readTextFile' | 'readTextFileSync' | 'writeTextFile' | 'watchFile' | 'env'>,
  }
}

function quietLogger() {
  const lines: string[] = []
  return { lines, logger: { log: (_level: string, msg: string) => void lines.push(msg) } }
}

const control = (base: string, baseCache?: string): ControlConfig & { base: string } => ({ pollMs: 1000, timeoutMs: 1000, jitter: 0, backoffMaxMs: 1000, base, ...(baseCache ? { baseCache } : {}) })
const LIMIT = (size: string) => `[defaults]\nlimits = { max_body = "${size}" }\n`

describe('the locked base across reloads', () => {
  it('keeps the last good base when the base turns invalid or unreadable, says why once, and holds a newer one pending until a policy passes it', async () => {
    const { files, host } = memoryHost({ '/etc/base.toml': LIMIT('1mb') })
    const { lines, logger } = quietLogger()
    const feed = await openLockedBase(control('/etc/base.toml'), host, logger)
    const first = feed.status()
    assert.deepEqual([first.origin, first.locks], ['file', [{ key: 'routes.*.limits', at: 'defaults.limits' }]])

    files['/etc/base.toml'] = LIMIT('lots')
    await feed.refresh()
    await feed.refresh()
    assert.equal(feed.current.defaults.limits?.maxBodyBytes, 1 << 20, 'the last good base stays')
    assert.match(feed.status().error ?? '', /defaults\.limits\.max_body: expected a size/)
    assert.equal(lines.filter((line) => line.includes('cannot be read again')).length, 1, 'said once, not at every poll')

    delete files['/etc/base.toml']
    await feed.refresh()
    assert.match(feed.status().error ?? '', /ENOENT/)

    files['/etc/base.toml'] = LIMIT('64kb')
    await feed.refresh()
    assert.equal(feed.current.defaults.limits?.maxBodyBytes, 64 << 10, 'policies are checked against the newest good base')
    const pending = feed.status()
    assert.equal(pending.error, undefined)
    assert.equal(pending.version, first.version, 'the base in force is still the one the running policy passed')
    assert.notEqual(pending.pending, undefined)
    feed.committed()
    assert.deepEqual([feed.status().version, feed.status().pending], [pending.pending, undefined])
  })

  it('refuses to open without a usable base; a cached copy is used only for a base URL', async () => {
    const { host } = memoryHost({ '/etc/bad.toml': '[listeners.x]\n' })
    const { logger } = quietLogger()
    await assert.rejects(openLockedBase(control('/etc/missing.toml'), host, logger), /the locked base \/etc\/missing\.toml is unusable, so the gateway does not start without it: ENOENT/)
    await assert.rejects(openLockedBase(control('/etc/bad.toml'), host, logger), /unknown key "listeners"/)
    const down = 'http://127.0.0.1:1/base.toml'
    await assert.rejects(openLockedBase(control(down), host, logger), /set \[control\] base_cache to start from the last good copy/)
    await assert.rejects(openLockedBase(control(down, '/var/copy.toml'), host, logger), /and so is its base_cache \/var\/copy\.toml \(ENOENT/)
    const cached = memoryHost({ '/var/copy.toml': LIMIT('2mb') })
    const feed = await openLockedBase(control(down, '/var/copy.toml'), cached.host, logger)
    assert.deepEqual([feed.status().origin, feed.current.defaults.limits?.maxBodyBytes], ['cache', 2 << 20])
  })
})
