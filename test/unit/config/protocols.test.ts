import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { ConfigError, type ConfigProblem } from '../../../src/core/config-error.ts'
import { loadConfigText } from '../../../src/config/load.ts'

const policy = (listener: string, upstream: string) => `
[gateway]
service = "orders"

[listeners.ingress]
listen = "0.0.0.0:8080"
direction = "ingress"
${listener}

[upstreams.local]
${upstream}

[[routes]]
listener = "ingress"
path = "/*"
upstream = "local"
`
const CLEAR_UPSTREAM = 'endpoints = ["http://127.0.0.1:3000"]'
const TLS = 'tls = { cert = "server.pem", key = "server.key" }'

function problems(text: string): ConfigProblem[] {
  try {
    loadConfigText(text, 'pillion.toml')
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error))
    return error.problems
  }
  assert.fail('expected the config to be rejected')
}

describe('listener protocols', () => {
  test('default to HTTP/1.1 alone, which leaves the listener on the runtime’s own server', () => {
    const config = loadConfigText(policy('', CLEAR_UPSTREAM), 'pillion.toml')
    assert.equal(config.listeners.ingress!.protocols, undefined)
    assert.equal(loadConfigText(policy('protocols = ["http1"]', CLEAR_UPSTREAM), 'p.toml').listeners.ingress!.protocols, undefined)
  })

  test('h2c beside HTTP/1.1 on a cleartext listener, h2 beside it on a TLS listener', () => {
    assert.deepEqual(loadConfigText(policy('protocols = ["http1", "h2c"]', CLEAR_UPSTREAM), 'p.toml').listeners.ingress!.protocols, ['http1', 'h2c'])
    assert.deepEqual(loadConfigText(policy(`${TLS}\nprotocols = ["h2"]`, CLEAR_UPSTREAM), 'p.toml').listeners.ingress!.protocols, ['h2'])
  })

  test('h2 needs TLS and h2c is refused on TLS, each saying what to write instead', () => {
    assert.deepEqual(problems(policy('protocols = ["http1", "h2"]', CLEAR_UPSTREAM)), [
      { path: 'listeners.ingress.protocols', message: 'h2 is HTTP/2 over TLS and needs tls = { cert, key }: without TLS write "h2c"' },
    ])
    assert.deepEqual(problems(policy(`${TLS}\nprotocols = ["h2c"]`, CLEAR_UPSTREAM)), [
      { path: 'listeners.ingress.protocols', message: 'h2c is cleartext HTTP/2: on a TLS listener write "h2" (chosen by ALPN)' },
    ])
  })

  test('unknown, repeated or no protocols are refused', () => {
    assert.deepEqual(problems(policy('protocols = ["http2"]', CLEAR_UPSTREAM)), [
      { path: 'listeners.ingress.protocols[0]', message: 'expected one of "http1", "h2c", "h2", got "http2"' },
    ])
    assert.equal(problems(policy('protocols = ["h2c", "h2c"]', CLEAR_UPSTREAM))[0]!.message, 'expected each protocol once')
    assert.match(problems(policy('protocols = []', CLEAR_UPSTREAM))[0]!.message, /at least one protocol/)
  })
})

describe('upstream protocol', () => {
  test('h2c and h2 are kept; http1 is the default and leaves it unset', () => {
    const load = (upstream: string) => loadConfigText(policy('', upstream), 'p.toml').upstreams.local!.protocol
    assert.equal(load(CLEAR_UPSTREAM), undefined)
    assert.equal(load(`${CLEAR_UPSTREAM}\nprotocol = "h2c"`), 'h2c')
    assert.equal(load('endpoints = ["https://10.0.0.1:8443"]\nprotocol = "h2"'), 'h2')
  })

  test('the endpoints’ scheme must agree with it', () => {
    assert.deepEqual(problems(policy('', 'endpoints = ["https://10.0.0.1:8443"]\nprotocol = "h2c"')), [
      { path: 'upstreams.local.protocol', message: 'h2c is HTTP/2 in cleartext, but endpoint https://10.0.0.1:8443 is https://: write protocol = "h2" for HTTP/2 over TLS' },
    ])
    assert.deepEqual(problems(policy('', `${CLEAR_UPSTREAM}\nprotocol = "h2"`)), [
      { path: 'upstreams.local.protocol', message: 'h2 is HTTP/2 over TLS, but endpoint http://127.0.0.1:3000 is http://: write protocol = "h2c" for cleartext HTTP/2' },
    ])
  })
})
