import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { loadConfigText } from '../../../src/config/load.ts'
import { preflightWarnings } from '../../../src/gateway/preflight.ts'
import { IN_AND_U } from '../fakes/policy-text.ts'

const route = (name: string, path: string, extra = '') => `
[[routes]]
name = "${name}"
listener = "in"
path = "${path}"
upstream = "u"
${extra}`

describe('pillion check warnings', () => {
  test('a route an earlier one covers is named with the route that covers it; a narrower earlier route is not', async () => {
    const config = loadConfigText(
      IN_AND_U + route('get-only', '/*', 'methods = ["GET"]') + route('all', '/*') + route('orders', '/orders/*') + route('posts', '/posts/:id', 'methods = ["POST"]'),
      'pillion.toml',
    )
    const warnings = await preflightWarnings(config, { resolveDns: async () => ['127.0.0.1'] })
    assert.deepEqual(warnings, [
      'routes[2] ("orders") can never match: routes[1] ("all") comes first and matches every request it would',
      'routes[3] ("posts") can never match: routes[1] ("all") comes first and matches every request it would',
    ])
  })

  test('each host name is resolved once; addresses are not resolved; a failure or an empty answer is a warning', async () => {
    const asked: string[] = []
    const config = loadConfigText(
      `${IN_AND_U}
[upstreams.a]
endpoints = ["http://gone.internal:1", "http://gone.internal:2", "http://[::1]:3", "http://empty.internal:4"]
[upstreams.b]
discovery = { dns = "dns.internal:80" }
${route('r', '/*')}`,
      'pillion.toml',
    )
    const warnings = await preflightWarnings(config, {
      resolveDns: async (name) => {
        asked.push(name)
        if (name === 'gone.internal') throw new Error('ENOTFOUND')
        return name === 'empty.internal' ? [] : ['10.0.0.1']
      },
    })
    assert.deepEqual(asked.sort(), ['dns.internal', 'empty.internal', 'gone.internal'])
    assert.deepEqual(warnings, [
      'upstreams.a.endpoints[0]: the name "gone.internal" does not resolve here (ENOTFOUND)',
      'upstreams.a.endpoints[3]: the name "empty.internal" resolves to no address here',
    ])
  })
})
