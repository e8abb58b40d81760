import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { loadConfigText } from '../../../src/config/load.ts'
import { adminToken } from '../../../src/admin/token.ts'
import { REDACTED, redact } from '../../../src/admin/redact.ts'
import { ONE_ROUTE, problemLines } from '../fakes/policy-text.ts'
import { isLoopback } from '../../../src/core/address.ts'

describe('admin lock-down', () => {
  test('loopback addresses', () => {
    for (const host of ['127.0.0.1', '127.9.9.9', '::1', 'localhost']) assert.ok(isLoopback(host), host)
    for (const host of ['0.0.0.0', '::', '10.0.0.1', 'admin.internal']) assert.ok(!isLoopback(host), host)
  })

  test('an admin listener off loopback needs admin_token_env', () => {
    const exposed = ONE_ROUTE.replace('service = "orders"', 'service = "orders"\nadmin = "0.0.0.0:9901"')
    assert.deepEqual(problemLines(exposed), [
      'gateway.admin_token_env: required when [gateway] admin is not a loopback address: name the environment variable that holds the admin bearer token',
    ])
    const locked = exposed.replace('admin = "0.0.0.0:9901"', 'admin = "0.0.0.0:9901"\nadmin_token_env = "ADMIN_TOKEN"')
    assert.equal(loadConfigText(locked, 'x.toml').gateway.adminTokenEnv, 'ADMIN_TOKEN')
  })

  test('the token comes from the environment, long enough, or the gateway does not start', () => {
    const env = (value: string | undefined) => () => value
    assert.equal(adminToken(undefined, env('ignored')), undefined)
    assert.equal(adminToken('T', env('0123456789abcdef')), '0123456789abcdef')
    assert.throws(() => adminToken('T', env(undefined)), /environment variable T \(gateway\.admin_token_env\) is not set/)
    assert.throws(() => adminToken('T', env('  ')), /is not set/)
    assert.throws(() => adminToken('T', env('short')), /is 5 characters; use at least 16/)
  })
})

describe('/config redaction', () => {
  test('passwords in URLs, secret-looking keys, private JWK members and credential header matches', () => {
    const config = {
      redis: { url: 'redis://:hunter2@cache:6379/0', onError: 'allow' },
      audit: { sink: 'https://audit.example/in?token=abc&batch=5' },
      gateway: { adminTokenEnv: 'ADMIN_TOKEN', service: 'orders' },
      control: { token: 'raw-token', url: 'http://control:1/feed' },
      routes: [
        {
          headers: [
            ['authorization', 'Bearer abc'],
            ['x-tenant', 'acme'],
          ],
          policies: {
            jwt: { secretEnv: 'JWT_SECRET', keys: [{ kty: 'EC', crv: 'P-256', x: 'x', y: 'y', d: 'private' }] },
            apiKey: { keysFile: 'keys.json', header: 'x-api-key' },
          },
        },
      ],
    }
    assert.deepEqual(redact(config), {
      redis: { url: 'redis://:redacted@cache:6379/0', onError: 'allow' },
      audit: { sink: 'https://audit.example/in?token=redacted&batch=5' },
      gateway: { adminTokenEnv: 'ADMIN_TOKEN', service: 'orders' },
      control: { token: REDACTED, url: 'http://control:1/feed' },
      routes: [
        {
          headers: [
            ['authorization', REDACTED],
            ['x-tenant', 'acme'],
          ],
          policies: {
            jwt: { secretEnv: 'JWT_SECRET', keys: [{ kty: 'EC', crv: 'P-256', x: 'x', y: 'y', d: REDACTED }] },
            apiKey: { keysFile: 'keys.json', header: 'x-api-key' },
          },
        },
      ],
    })
  })

  test('a config without secrets comes back equal', () => {
    const config = loadConfigText(ONE_ROUTE, 'x.toml')
    assert.deepEqual(redact(config), JSON.parse(JSON.stringify(config)))
  })
})
