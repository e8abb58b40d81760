import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { loadConfigText } from '../../../src/config/load.ts'
import { listenerServing } from '../../../src/gateway/listener-setup.ts'

function servingOf(gateway: string, limits = '', listener = 'listen = "127.0.0.1:0"'): ReturnType<typeof listenerServing> {
  const config = loadConfigText(
    `[gateway]
service = "s"
${gateway}

[listeners.in]
${listener}
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
  it('is 60s when no key sets it, required (kept by Bun and Deno too) only on a listener other hosts can reach', () => {
    assert.deepEqual(servingOf(''), { headersTimeoutMs: 60_000 })
    assert.deepEqual(servingOf('', '', 'listen = "[::1]:0"'), { headersTimeoutMs: 60_000 })
    assert.deepEqual(servingOf('', '', 'listen = "0.0.0.0:0"'), { headersTimeoutMs: 60_000, headersTimeoutRequired: true })
    assert.deepEqual(servingOf('', '', 'listen = "10.1.2.3:0"'), { headersTimeoutMs: 60_000, headersTimeoutRequired: true })
  })

  it('is header_timeout when set, or a shorter client_timeout of the listener’s routes; either makes it required', () => {
    assert.deepEqual(servingOf('header_timeout = "20s"'), { headersTimeoutMs: 20_000, headersTimeoutRequired: true })
    assert.deepEqual(servingOf('header_timeout = "20s"', 'limits = { client_timeout = "3s" }'), { headersTimeoutMs: 3_000, headersTimeoutRequired: true })
    assert.deepEqual(servingOf('', 'limits = { client_timeout = "3s" }'), { headersTimeoutMs: 3_000, headersTimeoutRequired: true })
  })

  it('a listener’s own header_timeout wins over [gateway]’s', () => {
    assert.deepEqual(servingOf('header_timeout = "20s"', '', 'listen = "127.0.0.1:0"\nheader_timeout = "5s"'), { headersTimeoutMs: 5_000, headersTimeoutRequired: true })
    assert.deepEqual(servingOf('header_timeout = "20s"', '', 'listen = "0.0.0.0:0"\nheader_timeout = "0s"'), { headersTimeoutMs: 0 })
  })

  it('"0s" turns it off, whatever the routes say', () => {
    assert.deepEqual(servingOf('header_timeout = "0s"', 'limits = { client_timeout = "3s" }'), { headersTimeoutMs: 0 })
    assert.deepEqual(servingOf('header_timeout = "0s"', '', 'listen = "0.0.0.0:0"'), { headersTimeoutMs: 0 })
  })

  it('a header_timeout that is not a duration is refused with its key path', () => {
    assert.throws(() => servingOf('header_timeout = 5'), /gateway\.header_timeout/)
    assert.throws(() => servingOf('', '', 'listen = "127.0.0.1:0"\nheader_timeout = "soon"'), /listeners\.in\.header_timeout/)
  })
})
