import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { loadConfigText } from '../../../src/config/load.ts'
import { requestProblem } from '../../../src/listener/hygiene.ts'
import { normalizePath, PathProblem } from '../../../src/listener/path.ts'
import { caseGuard } from '../../../src/listener/route-case.ts'
import { IN_AND_U } from '../fakes/policy-text.ts'

/** What the listener's URL parser hands over first: WHATWG resolves dot segments and backslashes. */
const pathname = (target: string) => new URL(`http://h${target}`).pathname

function normalized(target: string): string {
  const result = normalizePath(pathname(target))
  assert.ok(typeof result === 'string', `${target}: refused (${result instanceof PathProblem ? result.reason : ''})`)
  return result
}

function refused(target: string): string {
  const result = normalizePath(pathname(target))
  assert.ok(result instanceof PathProblem, `${target}: expected a refusal, got ${String(result)}`)
  return result.reason
}

describe('path normalization', () => {
  test('ordinary paths come back unchanged, as the same string', () => {
    for (const path of ['/', '/api', '/api/', '/api/items/42', '/.well-known/x', '/a-b_c~d.e', '/api/%20x', '/files/%E2%82%AC'])
      assert.equal(normalizePath(path), path)
  })

  test('dot segments, empty segments and encoded unreserved characters', () => {
    const cases: Array<[string, string]> = [
      ['/api/../admin', '/admin'],
      ['/api/%2e%2e/admin', '/admin'],
      ['/api/.%2E/admin', '/admin'],
      ['//admin', '/admin'],
      ['/api//x', '/api/x'],
      ['/api///x//', '/api/x/'],
      ['/./admin', '/admin'],
      ['/../../admin', '/admin'],
      ['/%61dmin', '/admin'],
      ['/%7Euser/%2D%5F', '/~user/-_'],
      ['/a/b/..', '/a/'],
      ['/a/.', '/a/'],
      ['/api\\..\\admin', '/admin'],
      ['/a%2Eb', '/a.b'],
      ['/x%3a%40', '/x%3A%40'],
      ['/x%e2%82%ac', '/x%E2%82%AC'],
    ]
    for (const [target, expected] of cases) assert.equal(normalized(target), expected, target)
  })

  test('spellings that could be read two ways are refused', () => {
    assert.equal(refused('/admin%2fx'), 'an encoded "/" or "\\" (%2F, %5C)')
    assert.equal(refused('/api/..%5Cadmin'), 'an encoded "/" or "\\" (%2F, %5C)')
    assert.equal(refused('/admin%00'), 'an encoded control character or NUL')
    assert.equal(refused('/admin%0d%0a'), 'an encoded control character or NUL')
    assert.equal(refused('/admin%7f'), 'an encoded control character or NUL')
    assert.equal(refused('/api/%252e%252e/admin'), 'double percent-encoding ("%25" before two hex digits)')
    // Found by the property test: decoding the unreserved "%41"s would make "%25AA".
    assert.equal(refused('/%25%41%41'), 'double percent-encoding ("%25" before two hex digits)')
    assert.equal(refused('/api/%zz'), 'a "%" not followed by two hex digits')
    assert.equal(refused('/api/x%'), 'a "%" not followed by two hex digits')
    assert.equal(refused('/api/%u002e'), 'a "%" not followed by two hex digits')
    assert.equal(refused('/api/%c0%ae%c0%ae/admin'), 'percent-encoded bytes that are not UTF-8')
    assert.equal(refused('/api/%e2%82'), 'percent-encoded bytes that are not UTF-8')
    assert.equal(refused('/admin;jsessionid=1/x'), 'a ";" (path parameters, which some servers drop)')
    assert.equal(refused('/api/..;/admin'), 'a ";" (path parameters, which some servers drop)')
    assert.equal(refused('/admin%3Bx'), 'a ";" (path parameters, which some servers drop)')
    // A literal percent sign that is not double encoding stays.
    assert.equal(normalized('/files/100%25'), '/files/100%25')
  })

  test('normalizing twice changes nothing', () => {
    for (const target of ['/api/../admin', '//a//b/', '/%61/%2e/', '/x%e2%82%ac/.', '/a%20b']) {
      const once = normalized(target)
      assert.equal(normalizePath(once), once, target)
    }
  })
})

describe('request hygiene', () => {
  const problem = (headers: Record<string, string>, method = 'GET') => requestProblem(method, new Headers(headers))

  test('ordinary requests pass', () => {
    assert.equal(problem({ host: 'a', 'content-length': '5' }), undefined)
    assert.equal(problem({ host: 'a', 'transfer-encoding': 'chunked' }), undefined)
    assert.equal(problem({ 'transfer-encoding': 'Chunked ' }), undefined)
  })

  test('smuggling-prone framing is refused', () => {
    assert.equal(problem({ 'content-length': '5', 'transfer-encoding': 'chunked' }), 'both Content-Length and Transfer-Encoding')
    assert.equal(problem({ 'content-length': '5, 6' }), 'conflicting Content-Length headers')
    assert.equal(problem({ 'content-length': '5, 5' }), 'a repeated Content-Length header')
    assert.equal(problem({ 'content-length': '+5' }), 'a Content-Length that is not a number')
    assert.equal(problem({ 'transfer-encoding': 'gzip, chunked' }), 'a Transfer-Encoding other than "chunked"')
    assert.equal(problem({ 'transfer-encoding': 'chunked, chunked' }), 'a Transfer-Encoding other than "chunked"')
  })

  test('another spelling of a method that every upstream client would send upper-cased is refused', () => {
    assert.equal(problem({}, 'get'), 'the method "get", another spelling of GET')
    assert.equal(problem({}, 'Post'), 'the method "Post", another spelling of POST')
    assert.equal(problem({}, 'PATCH'), undefined)
    assert.equal(problem({}, 'patch'), undefined, 'fetch sends "patch" as it is spelled')
    assert.equal(problem({}, 'PROPFIND'), undefined)
  })

  test('more than one Host, and path-rewriting headers, are refused', () => {
    assert.equal(problem({ host: 'a, b' }), 'more than one Host header')
    for (const host of ['a b', 'a/b', 'a@b', '[::1', 'a:b:c', 'a\\b']) assert.match(problem({ host }) ?? '', /not a host name/, host)
    for (const host of ['api.example.com', 'api.example.com:8443', '127.0.0.1:1', '[::1]:80', '[::1]', 'xn--bcher-kva.example', 'a_b', '']) assert.equal(problem({ host }), undefined, host)
    assert.equal(problem({ 'x-original-url': '/admin' }), 'an X-Original-URL or X-Rewrite-URL header')
    assert.equal(problem({ 'x-rewrite-url': '/admin' }), 'an X-Original-URL or X-Rewrite-URL header')
  })
})

describe('case guard', () => {
  const routes = loadConfigText(
    `${IN_AND_U}[[routes]]
name = "admin"
listener = "in"
path = "/admin/*"
upstream = "u"
[[routes]]
name = "users"
listener = "in"
path = "/users/:id"
upstream = "u"
[[routes]]
name = "rest"
listener = "in"
path = "/*"
upstream = "u"
`,
    'x.toml',
  ).routes
  const guard = caseGuard(routes)!
  const facts = (path: string) => ({ method: 'GET', host: null, path, headers: new Headers() })

  test('a path that reaches another route only by its case is flagged', () => {
    assert.equal(guard(facts('/ADMIN/x'), 'rest'), 'admin')
    assert.equal(guard(facts('/Admin'), 'rest'), 'admin')
  })

  test('paths whose case does not change the route pass', () => {
    assert.equal(guard(facts('/admin/X'), 'admin'), undefined)
    assert.equal(guard(facts('/users/AbC'), 'users'), undefined)
    assert.equal(guard(facts('/Static/Logo.PNG'), 'rest'), undefined)
    assert.equal(guard(facts('/plain'), 'rest'), undefined)
  })

  test('routes without letters need no guard', () => {
    assert.equal(caseGuard([{ ...routes[2]!, path: '/*' }]), undefined)
  })
})
