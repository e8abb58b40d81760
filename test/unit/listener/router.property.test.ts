import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import { compileRoute, firstMatch, type RouteMatch } from '../../../src/listener/router.ts'

/** Few names, so that generated patterns and paths often agree. */
const NAMES = ['a', 'b', 'api', 'v1', 'x.y', 'a-b']
const name = fc.constantFrom(...NAMES)
const patternSegment = fc.oneof({ weight: 3, arbitrary: name }, { weight: 1, arbitrary: fc.constantFrom(':id', ':name') })
const pattern = fc
  .tuple(fc.array(patternSegment, { maxLength: 3 }), fc.boolean())
  .map(([segments, wildcard]) => (segments.length === 0 ? (wildcard ? '/*' : '/') : `/${segments.join('/')}${wildcard ? '/*' : ''}`))
const path = fc
  .tuple(fc.array(name, { maxLength: 4 }), fc.boolean())
  .map(([segments, trailing]) => `/${segments.join('/')}${trailing && segments.length > 0 ? '/' : ''}`)
const method = fc.constantFrom('GET', 'POST', 'DELETE')
const host = fc.constantFrom('example.com', 'api.example.com', 'a.b.example.com', 'other.org', null)
const routeHost = fc.option(fc.constantFrom('example.com', 'api.example.com', '*.example.com', 'other.org'), { nil: undefined })

/** The reference: compare segment by segment, as the docs describe the three kinds of pattern. */
function modelPathMatches(pattern: string, path: string): boolean {
  if (pattern === '/*') return true
  const wildcard = pattern.endsWith('/*')
  const wanted = (wildcard ? pattern.slice(0, -2) : pattern).split('/')
  const given = path.split('/')
  if (wildcard ? given.length < wanted.length : given.length !== wanted.length) return false
  return wanted.every((segment, i) => (segment.startsWith(':') ? given[i] !== '' : segment === given[i]))
}

function modelHostMatches(routeHost: string | undefined, requested: string | null): boolean {
  if (routeHost === undefined) return true
  if (requested === null) return false
  if (!routeHost.startsWith('*.')) return requested === routeHost
  const labels = requested.split('.')
  const suffix = routeHost.slice(2).split('.')
  return labels.length > suffix.length && labels.slice(-suffix.length).join('.') === suffix.join('.')
}

function modelMatches(route: RouteMatch, facts: { method: string; host: string | null; path: string }): boolean {
  return (route.methods === undefined || route.methods.includes(facts.method)) && modelHostMatches(route.host, facts.host) && modelPathMatches(route.path, facts.path)
}

const route = fc.record(
  { name: fc.constant('r'), path: pattern, methods: fc.option(fc.subarray(['GET', 'POST', 'DELETE'], { minLength: 1 }), { nil: undefined }), host: routeHost },
  { requiredKeys: ['name', 'path'] },
)

describe('route matching, by property', () => {
  test('one route matches exactly when the segment-by-segment reference says so', () => {
    fc.assert(
      fc.property(route, method, host, path, (match, requestMethod, requestHost, requestPath) => {
        const facts = { method: requestMethod, host: requestHost, path: requestPath, headers: new Headers() }
        assert.equal(compileRoute(match, 0).matches(facts), modelMatches(match, facts), `${JSON.stringify(match)} against ${JSON.stringify(facts)}`)
      }),
      { numRuns: 5000 },
    )
  })

  test('a list of routes answers with the first that matches, in file order', () => {
    fc.assert(
      fc.property(fc.array(route, { minLength: 1, maxLength: 6 }), method, host, path, (routes, requestMethod, requestHost, requestPath) => {
        const facts = { method: requestMethod, host: requestHost, path: requestPath, headers: new Headers() }
        const compiled = routes.map((match, index) => compileRoute(match, index))
        const expected = routes.findIndex((match) => modelMatches(match, facts))
        assert.equal(firstMatch(compiled, facts), expected === -1 ? undefined : expected)
      }),
      { numRuns: 2000 },
    )
  })
})
