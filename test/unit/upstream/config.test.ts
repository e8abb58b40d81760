import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ConfigError } from '../../../src/core/config-error.ts'
import { loadConfigText } from '../../../src/config/load.ts'
import { DEFAULT_OUTLIER, type UpstreamConfig } from '../../../src/upstream/config.ts'

const BASE = `
[gateway]
service = "orders"

[listeners.ingress]
listen = "0.0.0.0:8080"
direction = "ingress"
`

function upstream(keys: string, source = '/etc/pillion/pillion.toml'): UpstreamConfig {
  return loadConfigText(`${BASE}\n[upstreams.payments]\n${keys}\n`, source).upstreams.payments!
}

function problems(keys: string): string[] {
  try {
    loadConfigText(`${BASE}\n[upstreams.payments]\n${keys}\n`, 'pillion.toml')
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error))
    return error.problems.map((p) => `${p.path}: ${p.message}`)
  }
  assert.fail('expected the config to be rejected')
}

describe('upstream outlier, health_check and discovery keys', () => {
  it('outlier detection is on unless turned off; health checks and discovery are off unless given; empty tables get every default', () => {
    const plain = upstream('endpoints = ["http://a:1"]')
    assert.deepEqual(plain.outlier, { consecutiveFailures: 5, baseEjectionMs: 10_000, maxEjectionMs: 60_000, maxEjectedPercent: 50 })
    assert.equal(plain.retryConnectFailure, true)
    const off = upstream('endpoints = ["http://a:1"]\noutlier = false\nretry_connect_failure = false')
    assert.equal(off.outlier, undefined)
    assert.equal(off.retryConnectFailure, false)
    assert.deepEqual(problems('endpoints = ["http://a:1"]\noutlier = true'), ['upstreams.payments.outlier: expected a table like { consecutive_failures = 5 }, or false, got true'])
    assert.equal(plain.healthCheck, undefined)
    assert.equal(plain.discovery, undefined)
    const defaults = upstream('endpoints = ["http://a:1"]\noutlier = {}\nhealth_check = { path = "/healthz" }')
    assert.deepEqual(defaults.outlier, { consecutiveFailures: 5, baseEjectionMs: 30_000, maxEjectionMs: 300_000, maxEjectedPercent: 10 })
    assert.deepEqual(defaults.healthCheck, { path: '/healthz', intervalMs: 5000, timeoutMs: 1000, unhealthyThreshold: 3, healthyThreshold: 2 })
  })

  it('normalize every key', () => {
    const full = upstream(`
endpoints = ["http://a:1"]
[upstreams.payments.outlier]
consecutive_failures = 3
base_ejection = "10s"
max_ejection = "1m"
max_ejected_percent = 50
[upstreams.payments.health_check]
path = "/ready?deep=1"
interval = "100ms"
timeout = "50ms"
unhealthy_threshold = 1
healthy_threshold = 4`)
    assert.deepEqual(full.outlier, { consecutiveFailures: 3, baseEjectionMs: 10_000, maxEjectionMs: 60_000, maxEjectedPercent: 50 })
    assert.deepEqual(full.healthCheck, { path: '/ready?deep=1', intervalMs: 100, timeoutMs: 50, unhealthyThreshold: 1, healthyThreshold: 4 })
  })

  it('discovery by DNS or by file replaces endpoints; a relative file is beside the policy file', () => {
    assert.deepEqual(upstream('discovery = { dns = "payments.internal:8080" }'), {
      name: 'payments',
      endpoints: [],
      balance: 'round_robin',
      connectTimeoutMs: 1000,
      retryConnectFailure: true,
      outlier: DEFAULT_OUTLIER,
      discovery: { dns: { host: 'payments.internal', port: 8080, scheme: 'http', refreshMs: 10_000 } },
    })
    assert.deepEqual(upstream('discovery = { dns = "[fd00::1]:443", scheme = "https", refresh = "30s" }').discovery, {
      dns: { host: 'fd00::1', port: 443, scheme: 'https', refreshMs: 30_000 },
    })
    assert.deepEqual(upstream('discovery = { file = "endpoints.json" }').discovery, {
      file: { path: '/etc/pillion/endpoints.json', refreshMs: 10_000 },
    })
    assert.deepEqual(upstream('discovery = { file = "/srv/eps.json", refresh = "2s" }').discovery, {
      file: { path: '/srv/eps.json', refreshMs: 2000 },
    })
  })

  it('reports what is wrong', () => {
    assert.deepEqual(problems('balance = "random"'), ['upstreams.payments.endpoints: required key missing (or set discovery)'])
    assert.deepEqual(problems('endpoints = ["http://a:1"]\ndiscovery = { file = "x.json" }'), [
      'upstreams.payments.discovery: expected endpoints or discovery, not both',
    ])
    assert.deepEqual(problems('discovery = { file = "x.json", dns = "a:1" }'), [
      'upstreams.payments.discovery: expected exactly one of dns or file, like { dns = "payments.internal:8080" } or { file = "endpoints.json" }',
    ])
    assert.deepEqual(problems('discovery = { file = "x.json", scheme = "https" }'), [
      'upstreams.payments.discovery.scheme: applies to dns only (file lists whole URLs)',
    ])
    assert.deepEqual(problems('discovery = { dns = "payments.internal" }'), [
      'upstreams.payments.discovery.dns: expected "host:port" like "payments.internal:8080", got "payments.internal"',
    ])
    assert.deepEqual(problems('discovery = { file = "x.json" }\nweights = [2]'), [
      'upstreams.payments.weights: applies to endpoints only (a discovery file gives each endpoint its own weight)',
    ])
    assert.deepEqual(problems('endpoints = ["http://a:1"]\noutlier = { consecutive_failures = 0, max_ejected_percent = 0, base_ejection = "1m", max_ejection = "30s" }'), [
      'upstreams.payments.outlier.consecutive_failures: expected a whole number of at least 1, got 0',
      'upstreams.payments.outlier.max_ejected_percent: expected a whole number from 1 to 100, got 0',
      'upstreams.payments.outlier.max_ejection: expected a duration no shorter than base_ejection',
    ])
    assert.deepEqual(problems('endpoints = ["http://a:1"]\nhealth_check = { interval = "0s", timeout = "1s" }'), [
      'upstreams.payments.health_check.path: required key missing',
      'upstreams.payments.health_check.interval: expected a duration of at least "1ms", got "0s"',
    ])
    assert.deepEqual(problems('endpoints = ["http://a:1"]\nhealth_check = { path = "healthz" }'), [
      'upstreams.payments.health_check.path: expected a path like "/healthz", got "healthz"',
    ])
  })
})

describe('upstream TLS keys: ca, cert, key, server_name', () => {
  it('gather into tls, files beside the policy file, the server name lower-cased', () => {
    const tls = upstream('endpoints = ["https://a:1"]\nca = "ca.pem"\ncert = "/certs/me.pem"\nkey = "me-key.pem"\nserver_name = "Payments.Internal"').tls
    assert.deepEqual(tls, { ca: '/etc/pillion/ca.pem', cert: '/certs/me.pem', key: '/etc/pillion/me-key.pem', serverName: 'payments.internal' })
    assert.equal(upstream('endpoints = ["https://a:1"]').tls, undefined)
  })

  it('a certificate needs its key and a key its certificate', () => {
    assert.deepEqual(problems('endpoints = ["https://a:1"]\ncert = "me.pem"'), ['upstreams.payments.key: required key missing (cert is set: its private key)'])
    assert.deepEqual(problems('endpoints = ["https://a:1"]\nkey = "me-key.pem"'), ['upstreams.payments.cert: required key missing (key is set: the client certificate it belongs to)'])
  })

  it('server_name is a DNS name, as SNI carries no IP address', () => {
    for (const bad of ['10.0.0.7', 'payments.internal:8443', 'https://payments.internal', 'under_score.internal', '*.internal']) {
      assert.deepEqual(problems(`endpoints = ["https://a:1"]\nserver_name = "${bad}"`), [
        `upstreams.payments.server_name: expected a DNS name like "payments.internal" (SNI cannot carry an IP address), got "${bad}"`,
      ])
    }
  })

  it('TLS keys on plain http endpoints are refused rather than ignored', () => {
    assert.deepEqual(problems('endpoints = ["https://a:1", "http://b:1"]\ncert = "me.pem"\nkey = "me-key.pem"'), [
      'upstreams.payments.cert: applies to https endpoints only, and endpoints[1] is "http://b:1"',
    ])
    assert.deepEqual(problems('discovery = { dns = "payments.internal:8443" }\nserver_name = "payments.internal"'), [
      'upstreams.payments.server_name: applies to https endpoints only: set discovery.scheme = "https"',
    ])
    assert.equal(upstream('discovery = { dns = "payments.internal:8443", scheme = "https" }\nserver_name = "payments.internal"').tls?.serverName, 'payments.internal')
  })
})
