import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { loadConfigText } from '../../../src/config/load.ts'
import { compileRoute, firstMatch, type RequestFacts } from '../../../src/listener/router.ts'

function facts(host: string | null, path = '/'): RequestFacts {
  return { method: 'GET', host, path, headers: new Headers() }
}

describe('route matching by host', () => {
  test('an exact host matches only itself', () => {
    const route = compileRoute({ name: 'r', path: '/*', host: 'api.example.com' }, 'r')
    assert.equal(route.matches(facts('api.example.com')), true)
    assert.equal(route.matches(facts('www.api.example.com')), false)
    assert.equal(route.matches(facts(null)), false)
  })

  test('"*.example.com" matches any name below example.com, at any depth, but not example.com itself', () => {
    const route = compileRoute({ name: 'r', path: '/*', host: '*.example.com' }, 'r')
    assert.equal(route.matches(facts('api.example.com')), true)
    assert.equal(route.matches(facts('a.b.example.com')), true)
    assert.equal(route.matches(facts('example.com')), false)
    assert.equal(route.matches(facts('badexample.com')), false)
    assert.equal(route.matches(facts(null)), false)
  })

  test('the loader keeps the wildcard, lower-cased, and routes are still tried in file order', () => {
    const config = loadConfigText(
      `[gateway]
service = "s"
[listeners.egress]
listen = "127.0.0.1:0"
direction = "egress"
[upstreams.u]
endpoints = ["http://127.0.0.1:1"]
[[routes]]
name = "exact"
listener = "egress"
host = "pay.Internal"
path = "/*"
upstream = "u"
[[routes]]
name = "wildcard"
listener = "egress"
host = "*.Internal"
path = "/*"
upstream = "u"
`,
      'p.toml',
    )
    assert.equal(config.routes[1]!.host, '*.internal')
    const routes = config.routes.map((route) => compileRoute(route, route.name))
    assert.equal(firstMatch(routes, facts('pay.internal')), 'exact')
    assert.equal(firstMatch(routes, facts('ledger.internal')), 'wildcard')
    assert.equal(firstMatch(routes, facts('internal')), undefined)
  })
})
