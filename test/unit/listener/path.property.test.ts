import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import { normalizePath, PathProblem } from '../../../src/listener/path.ts'
import { compilePath } from '../../../src/listener/router.ts'
import { compileRewrite } from '../../../src/proxy/rewrite.ts'

/** Pieces attackers and confused clients put in paths: dots, encodings of dots and slashes, overlongs. */
const PIECES = ['/', '/', '/', 'a', 'api', 'admin', '.', '..', '%2e', '%2E', '%2e%2e', '%2f', '%5c', '%25', '%252e', '%', '%4', '%41', '%7e', '%c0%ae', '%e2%82%ac', ';', '%3b', '\\', ' ', '~', '-', '?', '#', '%00', '\u00e9']
const rawPath = fc.array(fc.constantFrom(...PIECES), { maxLength: 12 }).map((pieces) => `/${pieces.join('')}`)

/** What the runtime hands the gateway for an origin-form request target: its URL's pathname. */
function parsedPathname(raw: string): string {
  return new URL(`http://gateway.test${raw}`).pathname
}

/** A server behind us that decodes everything and resolves dot segments (the most trusting kind). */
function trustingServerView(path: string): string {
  const segments: string[] = []
  for (const segment of decodeURIComponent(path).split('/')) {
    if (segment === '..') segments.pop()
    else if (segment !== '.' && segment !== '') segments.push(segment)
  }
  return `/${segments.join('/')}`
}

const DOT_SEGMENT = /(?:^|\/)(?:\.|%2e){1,2}(?:\/|$)/i

describe('path normalization, by property', () => {
  test('is idempotent, and its result has no dot segment, no empty segment and no encoded slash', () => {
    fc.assert(
      fc.property(rawPath, (raw) => {
        const once = normalizePath(parsedPathname(raw))
        if (once instanceof PathProblem) return
        assert.equal(normalizePath(once), once, `normalizing ${JSON.stringify(raw)} twice`)
        assert.ok(once.startsWith('/'), once)
        assert.doesNotMatch(once, DOT_SEGMENT)
        assert.doesNotMatch(once, /\/\/|%2f|%5c|;/i)
      }),
      { numRuns: 5000 },
    )
  })

  test('a path matched under a prefix stays under it for a server that decodes everything', () => {
    const underApi = compilePath('/api/*')
    fc.assert(
      fc.property(rawPath, (raw) => {
        const path = normalizePath(parsedPathname(raw))
        if (path instanceof PathProblem || !underApi(path)) return
        const seen = trustingServerView(path)
        assert.ok(seen === '/api' || seen.startsWith('/api/'), `${JSON.stringify(raw)} matched /api/* as ${path} but a server sees ${seen}`)
      }),
      { numRuns: 5000 },
    )
  })

  test('a regex rewrite never sends a dot segment upstream: it refuses instead', () => {
    const rewrites = [
      compileRewrite({ regex: { pattern: '^/api/(.*)$', replacement: '/$1' } }),
      compileRewrite({ regex: { pattern: '^/api', replacement: '' } }),
      compileRewrite({ prefix: '/v2/', regex: { pattern: '[a-z]+', replacement: '..' } }),
    ]
    fc.assert(
      fc.property(rawPath, fc.nat({ max: rewrites.length - 1 }), (raw, which) => {
        const path = normalizePath(parsedPathname(raw))
        if (path instanceof PathProblem) return
        let rewritten: string
        try {
          rewritten = rewrites[which]!(path)
        } catch {
          return
        }
        assert.ok(rewritten.startsWith('/'), rewritten)
        assert.doesNotMatch(rewritten, DOT_SEGMENT)
        assert.doesNotMatch(decodeURIComponent(rewritten), /(?:^|\/)\.\.(?:\/|$)/)
      }),
      { numRuns: 3000 },
    )
  })
})
