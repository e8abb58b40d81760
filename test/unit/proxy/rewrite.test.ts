import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { loadConfigText } from '../../../src/config/load.ts'
import { GatewayError } from '../../../src/core/errors.ts'
import { compileRewrite } from '../../../src/proxy/rewrite.ts'
import { problemLines } from '../fakes/policy-text.ts'

const HEAD = `[gateway]
service = "s"
[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"
[upstreams.u]
endpoints = ["http://127.0.0.1:1"]
[[routes]]
listener = "ingress"
path = "/api/*"
strip_prefix = "/api"
upstream = "u"
`

describe('path rewrite', () => {
  test('a prefix goes in front of the path strip_prefix left', () => {
    const rewrite = compileRewrite({ prefix: '/v2/' })
    assert.equal(rewrite('/orders/7'), '/v2/orders/7')
    assert.equal(rewrite('/'), '/v2/')
  })

  test('a regular expression replaces with its groups, before the prefix', () => {
    const rewrite = compileRewrite({ regex: { pattern: '^/users/([0-9]+)$', replacement: '/u/$1' }, prefix: '/v1' })
    assert.equal(rewrite('/users/42'), '/v1/u/42')
    assert.equal(rewrite('/other'), '/v1/other')
  })

  test('a replacement that would make a dot segment, leave the root or add a query is refused per request', () => {
    for (const replacement of ['/a/$1/..', '$1', '/x?y=1', '/%2e%2e/etc']) {
      const rewrite = compileRewrite({ regex: { pattern: '^/(.*)$', replacement } })
      assert.throws(() => rewrite('/secret'), (error) => error instanceof GatewayError && error.code === 'bad_request', replacement)
    }
  })

  test('the loader normalizes it and names every problem by key path', () => {
    assert.deepEqual(loadConfigText(`${HEAD}rewrite = { prefix = "/v2" }\n`, 'p.toml').routes[0]!.rewrite, { prefix: '/v2' })
    assert.deepEqual(
      loadConfigText(`${HEAD}rewrite = { regex = "^/a/(.*)$", replacement = "/b/$1" }\n`, 'p.toml').routes[0]!.rewrite,
      { regex: { pattern: '^/a/(.*)$', replacement: '/b/$1' } },
    )
    assert.deepEqual(problemLines(`${HEAD}rewrite = { prefix = "v2/../x" }\n`), [
      'routes[0].rewrite.prefix: expected a path prefix like "/v2", without dot segments, got "v2/../x"',
    ])
    assert.deepEqual(problemLines(`${HEAD}rewrite = { regex = "(" , replacement = "/" }\n`).map((line) => line.split(':').slice(0, 2).join(':')), [
      'routes[0].rewrite.regex: expected a regular expression, got "("',
    ])
    assert.deepEqual(problemLines(`${HEAD}rewrite = { regex = "^/a$" }\n`), ['routes[0].rewrite.replacement: expected regex and replacement together'])
    assert.deepEqual(problemLines(`${HEAD}rewrite = {}\n`), ['routes[0].rewrite: expected prefix, or regex with replacement'])
  })
})
