import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createReloader } from '../../../src/control/reloader.ts'
import type { Config } from '../../../src/config/types.ts'

const TEXT = 'the policy'
const silent = { log: () => {} }

function reloaderWith(refresh: () => Promise<string[]>) {
  return createReloader({
    source: 'pillion.toml',
    initialText: TEXT,
    read: async () => TEXT,
    load: () => assert.fail('an unchanged text is not loaded again') as Config,
    apply: async () => assert.fail('an unchanged text is not applied again'),
    refresh,
    logger: silent as never,
  })
}

describe('a reload of an unchanged policy', () => {
  it('reports certificate files that rotated as a change', async () => {
    const reloader = await reloaderWith(async () => ['listeners.mesh.tls', 'upstreams.payments'])
    const outcome = await reloader.reload('signal')
    assert.equal(outcome.ok, true)
    assert.equal(outcome.changed, true)
    assert.deepEqual(outcome.rotated, ['listeners.mesh.tls', 'upstreams.payments'])
    assert.deepEqual(reloader.status().reloads, { succeeded: 1, failed: 0, unchanged: 0 })
  })

  it('with nothing rotated is unchanged', async () => {
    const reloader = await reloaderWith(async () => [])
    const outcome = await reloader.reload('admin')
    assert.equal(outcome.changed, false)
    assert.equal(outcome.rotated, undefined)
    assert.deepEqual(reloader.status().reloads, { succeeded: 0, failed: 0, unchanged: 1 })
  })

  it('fails, keeping what runs, when the new files cannot be used', async () => {
    const reloader = await reloaderWith(async () => {
      throw new Error('listeners.mesh.tls.key key.pem: this private key does not belong to the certificate in cert')
    })
    const outcome = await reloader.reload('certificate')
    assert.equal(outcome.ok, false)
    assert.match(outcome.error!, /^cannot rotate certificates: listeners\.mesh\.tls\.key key\.pem: /)
  })
})
