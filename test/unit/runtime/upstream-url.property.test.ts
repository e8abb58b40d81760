import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import { upstreamTarget } from '../../../src/runtime/upstream-url.ts'

const ORIGINS = ['http://127.0.0.1:8001', 'https://api.example:443', 'http://[::1]:9000', 'http://Example.COM', 'https://user:pw@h.example', 'http://h.example?q=', 'http://h.example:80']
/** Pieces of paths and queries, odd ones included: what the URL parser would encode or resolve. */
const PIECES = ['/', '/', 'a', 'v1', '.', '..', '%2e', '%2E', '%41', '%', '?', '?', '=', '&', '#', ' ', '"', "'", '<', '`', '{', '^', '|', '\\', '[', ']', '~', '!', '$', ';', '\u00e9', '\t']
const rest = fc.array(fc.constantFrom(...PIECES), { maxLength: 10 }).map((pieces) => `/${pieces.join('')}`)

function parsed(href: string): { origin: string; host: string; path: string } {
  const url = new URL(href)
  return { origin: url.origin, host: url.host, path: url.pathname + url.search }
}

describe('the upstream URL split, by property', () => {
  test('is the URL parser’s split, whether the origin is known yet or not', () => {
    fc.assert(
      fc.property(fc.constantFrom(...ORIGINS), rest, rest, (origin, first, second) => {
        for (const href of [origin + first, origin + second, origin + first]) {
          const target = upstreamTarget(href)
          assert.deepEqual({ origin: target.at.origin, host: target.at.host, path: target.path }, parsed(href), href)
        }
      }),
      { numRuns: 3000 },
    )
  })

  test('gives the dial target: the bare host name and the port, defaulted by scheme', () => {
    assert.deepEqual(upstreamTarget('http://[::1]:9000/x').at, { origin: 'http://[::1]:9000', https: false, host: '[::1]:9000', hostname: '::1', port: 9000 })
    assert.deepEqual(upstreamTarget('https://h.example/x').at, { origin: 'https://h.example', https: true, host: 'h.example', hostname: 'h.example', port: 443 })
    assert.deepEqual(upstreamTarget('http://h.example:80/x?y').at.port, 80)
  })
})
