import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { loadConfigText } from '../../../src/config/load.ts'
import { listenerServing } from '../../../src/gateway/listener-setup.ts'

function servingOf(gateway: string, limits = ''): ReturnType<typeof listenerServing> {
  const config = loadConfigText(
    `[gateway]
service = "s"
${gateway}

[listeners.in]
listen = "127.0.0.1:0"
direction = "ingress"

[upstreams.app]
endpoints = ["http://127.0.0.1:3000"]

[[routes]]
listener = "in"
path = "/*"
upstream = "app"
${limits}`,
    'pillion.toml',
  )
  return listenerServing(config, config.listeners.in!)
}

describe('a listener’s header deadline', () => {
  it('is 60s when header_timeout is not set, and not marked as asked for (Bun and Deno then keep none)', () => {
    assert.deepEqual(servingOf(''), { headersTimeoutMs: 60_000 })
  })

  it('is header_timeout when set, or a shorter client_timeout of the listener’s routes', () => {
    assert.deepEqual(servingOf('header_timeout = "20s"'), { headersTimeoutMs: 20_000, headersTimeoutSet: true })
    assert.deepEqual(servingOf('header_timeout = "20s"', 'limits = { client_timeout = "3s" }'), { headersTimeoutMs: 3_000, headersTimeoutSet: true })
    assert.deepEqual(servingOf('', 'limits = { client_timeout = "3s" }'), { headersTimeoutMs: 3_000 })
  })

  it('"0s" turns it off, whatever the routes say', () => {
    assert.deepEqual(servingOf('header_timeout = "0s"', 'limits = { client_timeout = "3s" }'), { headersTimeoutMs: 0, headersTimeoutSet: true })
  })

  it('a header_timeout that is not a duration is refused with its key path', () => {
    assert.throws(() => servingOf('header_timeout = 5'), /gateway\.header_timeout/)
  })
})
