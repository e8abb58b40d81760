import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import { routeCovers } from '../../../src/listener/route-cover.ts'
import { compileRoute, type RouteMatch } from '../../../src/listener/router.ts'

const r = (path: string, extra: Partial<RouteMatch> = {}): RouteMatch => ({ name: 'r', path, ...extra })

describe('whether an earlier route covers a later one', () => {
  test('paths: "/*" covers all, a prefix covers what is below it, an exact path only itself', () => {
    assert.equal(routeCovers(r('/*'), r('/orders/:id')), true)
    assert.equal(routeCovers(r('/orders/*'), r('/orders')), true)
    assert.equal(routeCovers(r('/orders/*'), r('/orders/:id/items/*')), true)
    assert.equal(routeCovers(r('/orders/:id'), r('/orders/42')), true)
    assert.equal(routeCovers(r('/orders/42'), r('/orders/:id')), false)
    assert.equal(routeCovers(r('/orders'), r('/orders/*')), false)
    assert.equal(routeCovers(r('/orders/*'), r('/order/*')), false)
  })

  test('methods, host and headers narrow what covers', () => {
    assert.equal(routeCovers(r('/*', { methods: ['GET'] }), r('/a')), false)
    assert.equal(routeCovers(r('/*', { methods: ['GET', 'POST'] }), r('/a', { methods: ['GET'] })), true)
    assert.equal(routeCovers(r('/*', { host: '*.example.com' }), r('/a', { host: 'api.example.com' })), true)
    assert.equal(routeCovers(r('/*', { host: '*.example.com' }), r('/a', { host: 'example.com' })), false)
    assert.equal(routeCovers(r('/*', { host: 'a.example.com' }), r('/a')), false)
    assert.equal(routeCovers(r('/*', { headers: [['x-canary', '1']] }), r('/a')), false)
    assert.equal(routeCovers(r('/*'), r('/a', { headers: [['x-canary', '1']] })), true)
  })

  test('a cover it claims is real: no request the later route matches escapes the earlier one', () => {
    const segment = fc.constantFrom('a', 'b', ':id')
    const pattern = fc.tuple(fc.array(segment, { maxLength: 3 }), fc.boolean()).map(([segments, wildcard]) => (segments.length === 0 ? (wildcard ? '/*' : '/') : `/${segments.join('/')}${wildcard ? '/*' : ''}`))
    const route = fc.record({ name: fc.constant('r'), path: pattern, methods: fc.option(fc.subarray(['GET', 'POST'], { minLength: 1 }), { nil: undefined }) }, { requiredKeys: ['name', 'path'] })
    const path = fc.array(fc.constantFrom('a', 'b', 'c'), { maxLength: 4 }).map((segments) => `/${segments.join('/')}`)
    fc.assert(
      fc.property(route, route, path, fc.constantFrom('GET', 'POST'), (earlier, later, requestPath, method) => {
        if (!routeCovers(earlier, later)) return
        const facts = { method, host: null, path: requestPath, headers: new Headers() }
        if (compileRoute(later, 0).matches(facts)) assert.ok(compileRoute(earlier, 0).matches(facts), `${earlier.path} was said to cover ${later.path}, but not ${requestPath}`)
      }),
      { numRuns: 3000 },
    )
  })
})
