// Path normalization and request hygiene, as each runtime's HTTP parser hands requests over. Raw
// sockets, since HTTP clients normalize paths and refuse malformed headers before sending.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startGateway, startUpstream, targets, type Gateway, type Upstream } from './harness.ts'
import { rawHead, rawRequest } from './security-helpers.ts'

interface Case {
  /** The request target exactly as sent on the request line. */
  target: string
  /** What the client gets: 403 means the protected route's policy refused it; 400 that it was refused before routing. */
  expect: number | number[]
  /** For a 200: the path and query the service saw. */
  upstream?: string
  headers?: string[]
  why: string
}

/** Every way we know to reach /admin/* without passing its policy, and what each must get. */
const PATH_CASES: Case[] = [
  { target: '/admin/x', expect: 403, why: 'the protected route itself' },
  { target: '/admin', expect: 403, why: 'its bare prefix' },
  { target: '/api/x', expect: 200, upstream: '/api/x', why: 'an open route' },
  { target: '/index.html', expect: 200, upstream: '/index.html', why: 'the catch-all' },
  { target: '/api/../admin/x', expect: 403, why: 'dot-dot' },
  { target: '/api/./../admin/x', expect: 403, why: 'dot then dot-dot' },
  { target: '/api/x/../../admin/x', expect: 403, why: 'two levels up' },
  { target: '/../../admin/x', expect: 403, why: 'above the root' },
  { target: '/./admin/x', expect: 403, why: 'leading dot segment' },
  { target: '/api/%2e%2e/admin/x', expect: 403, why: 'encoded dot-dot' },
  { target: '/api/%2E%2E/admin/x', expect: 403, why: 'encoded dot-dot, upper case' },
  { target: '/api/.%2e/admin/x', expect: 403, why: 'half-encoded dot-dot' },
  { target: '/api/%2e./admin/x', expect: 403, why: 'half-encoded dot-dot, other half' },
  { target: '/static/%2e%2e/%2e%2e/admin', expect: 403, why: 'repeated encoded dot-dot' },
  { target: '/ap%69/../admin/x', expect: 403, why: 'encoded letter before dot-dot' },
  { target: '//admin/x', expect: 403, why: 'double slash' },
  { target: '///admin/x', expect: 403, why: 'triple slash' },
  { target: '/admin//x', expect: 403, why: 'inner double slash' },
  { target: '/api//../admin/x', expect: 200, upstream: '/api/admin/x', why: 'dot-dot after an empty segment stays under /api, and that is what is sent' },
  { target: '/api/..%2fadmin/x', expect: 400, why: 'encoded slash' },
  { target: '/api/..%2Fadmin/x', expect: 400, why: 'encoded slash, upper case' },
  { target: '/api%2f..%2fadmin/x', expect: 400, why: 'encoded slashes all round' },
  { target: '/api/..%5cadmin/x', expect: 400, why: 'encoded backslash' },
  { target: '/api\\..\\admin/x', expect: [400, 403], why: 'backslashes: Node refuses them, Bun and Deno read them as "/"' },
  { target: '/%61dmin/x', expect: 403, why: 'encoded unreserved letter' },
  { target: '/%61%64%6d%69%6e/x', expect: 403, why: 'fully encoded name' },
  { target: '/api/%252e%252e/admin/x', expect: 400, why: 'double-encoded dots' },
  { target: '/api/%252fadmin', expect: 400, why: 'double-encoded slash' },
  { target: '/api/%c0%ae%c0%ae/admin/x', expect: 400, why: 'overlong UTF-8 dots (IIS)' },
  { target: '/api/%e0%80%ae', expect: 400, why: 'overlong three-byte dot' },
  { target: '/api/%zz', expect: 400, why: 'malformed percent-encoding' },
  { target: '/api/x%', expect: 400, why: 'truncated percent-encoding' },
  { target: '/api/%u002e%u002e/admin', expect: 400, why: 'IIS %u encoding' },
  { target: '/admin%00/x', expect: 400, why: 'encoded NUL' },
  { target: '/api/..%00/admin/x', expect: 400, why: 'encoded NUL after dot-dot' },
  { target: '/admin%0d%0aX-Injected:%20yes', expect: 400, why: 'encoded CR LF' },
  { target: '/ADMIN/x', expect: 400, why: 'upper case reaches the catch-all, but folds to the protected route' },
  { target: '/Admin', expect: 400, why: 'mixed case' },
  { target: '/%41DMIN/x', expect: 400, why: 'encoded upper case' },
  { target: '/API/x', expect: 400, why: 'case folding to an open route is ambiguous too' },
  { target: '/admin;x/y', expect: 400, why: 'path parameter: Tomcat reads /admin/y' },
  { target: '/api/..;/admin/x', expect: 400, why: 'dot-dot with a parameter: Tomcat reads /admin/x' },
  { target: '/api/x;jsessionid=1', expect: 400, why: 'any path parameter' },
  { target: '/admin%3bx/y', expect: 400, why: 'encoded semicolon' },
  { target: '/admin#/../api/x', expect: 403, why: 'a fragment is not part of the path' },
  { target: '/api/x?/../../admin', expect: 200, upstream: '/api/x?/../../admin', why: 'dots in the query are the query' },
  { target: 'http://evil.example/admin/x', expect: 403, why: 'absolute-form request target' },
  { target: 'admin/x', expect: 400, why: 'no leading slash' },
  { target: '/admin\x00', expect: [400, 505], why: 'raw NUL in the request line (Bun answers 505)' },
  { target: '/api/x', headers: ['X-Original-URL: /admin/x'], expect: 400, why: 'path override header (Symfony, IIS)' },
  { target: '/api/x', headers: ['X-Rewrite-URL: /admin/x'], expect: 400, why: 'path override header' },
  { target: '/admin/x', headers: ['X-Forwarded-For: 203.0.113.5'], expect: 403, why: 'X-Forwarded-For from an untrusted peer is not believed' },
]

/** Framing and header tricks: every one is refused, by the runtime's parser or by Pillion, and none reaches the service. */
const HYGIENE_CASES: Array<{ why: string; head: string[]; body?: string; line?: string }> = [
  { why: 'Content-Length and Transfer-Encoding both', head: ['Content-Length: 5', 'Transfer-Encoding: chunked'], body: '0\r\n\r\n' },
  { why: 'conflicting Content-Length', head: ['Content-Length: 5', 'Content-Length: 6'], body: 'hello!' },
  { why: 'repeated Content-Length', head: ['Content-Length: 5', 'Content-Length: 5'], body: 'hello' },
  { why: 'Content-Length list', head: ['Content-Length: 5, 5'], body: 'hello' },
  { why: 'signed Content-Length', head: ['Content-Length: +5'], body: 'hello' },
  { why: 'Transfer-Encoding gzip, chunked', head: ['Transfer-Encoding: gzip, chunked'], body: '0\r\n\r\n' },
  { why: 'Transfer-Encoding xchunked', head: ['Transfer-Encoding: xchunked'], body: '0\r\n\r\n' },
  { why: 'Transfer-Encoding twice', head: ['Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'], body: '0\r\n\r\n' },
  { why: 'Transfer-Encoding with a space before the colon', head: ['Transfer-Encoding : chunked'], body: '0\r\n\r\n' },
  { why: 'two Host headers', head: ['Host: b'] },
  { why: 'CR inside a header value', head: ['X-A: b\rc'] },
  { why: 'NUL inside a header value', head: ['X-A: b\x00c'] },
  { why: 'obs-fold continuation line', head: ['X-A: b', ' c'] },
  { why: 'header name with a space', head: ['X A: b'] },
]

const POLICY = (upstream: Upstream) => `
[gateway]
service = "paths"
admin = "127.0.0.1:0"

[listeners.in]
listen = "127.0.0.1:0"
direction = "ingress"

[upstreams.echo]
endpoints = ["${upstream.url}"]

[[routes]]
name = "admin"
listener = "in"
path = "/admin/*"
upstream = "echo"
ip = { allow = ["203.0.113.0/24"] }

[[routes]]
name = "api"
listener = "in"
path = "/api/*"
upstream = "echo"

[[routes]]
name = "public"
listener = "in"
path = "/*"
upstream = "echo"
`

for (const target of targets()) {
  describe(`path normalization and request hygiene on ${target.name}`, { skip: target.missing }, () => {
    let upstream: Upstream
    let gateway: Gateway
    let base: string
    const seen: string[] = []

    before(async () => {
      upstream = await startUpstream((req, res) => {
        seen.push(req.url!)
        req.resume()
        req.on('end', () => res.end(JSON.stringify({ url: req.url, xa: req.headers['x-a'], xb: req.headers['x-b'] })))
      })
      gateway = await startGateway(target, POLICY(upstream))
      base = gateway.listeners.in!
    })

    after(async () => {
      const code = await gateway?.stop()
      await upstream?.close()
      assert.equal(code, 0, `gateway exit code; stderr:\n${gateway?.stderr.join('\n')}`)
    })

    it(`has at least 40 path cases (${PATH_CASES.length})`, () => assert.ok(PATH_CASES.length >= 40))

    for (const c of PATH_CASES) {
      it(`${JSON.stringify(c.target)}${c.headers ? ` + ${c.headers.join(', ')}` : ''}: ${c.why}`, async () => {
        const before = seen.length
        const reply = await rawRequest(base, rawHead(`GET ${c.target} HTTP/1.1`, ['Host: localhost', ...(c.headers ?? [])]))
        const expected = Array.isArray(c.expect) ? c.expect : [c.expect]
        assert.ok(expected.includes(reply.status), `status ${reply.status}, expected ${expected.join(' or ')}\n${reply.text.slice(0, 400)}`)
        if (reply.status === 200) {
          assert.equal(JSON.parse(reply.text.slice(reply.text.indexOf('\r\n\r\n') + 4)).url, c.upstream)
        } else {
          assert.equal(seen.length, before, `the service was called with ${seen.at(-1)}`)
        }
      })
    }

    it('never let a path through to the service that names /admin in any spelling', () => {
      for (const path of seen) {
        const decoded = decodeURIComponent(path.split('?')[0]!).toLowerCase().replace(/\/+/g, '/')
        assert.ok(!decoded.startsWith('/admin'), path)
      }
    })

    for (const c of HYGIENE_CASES) {
      it(`refuses ${c.why}`, async () => {
        const before = seen.length
        const reply = await rawRequest(base, rawHead('POST /api/x HTTP/1.1', ['Host: localhost', ...c.head]) + (c.body ?? ''))
        assert.ok(reply.status === 400 || reply.status === 501 || reply.status === 0, `status ${reply.status}\n${reply.text.slice(0, 300)}`)
        assert.equal(seen.length, before, 'the service was called')
      })
    }

    it('a bare LF ends a header line (RFC 9112 §2.2 allows it; Deno does) or the request is refused', async () => {
      const reply = await rawRequest(base, rawHead('GET /api/lf HTTP/1.1', ['Host: localhost', 'X-A: b\nX-B: c']))
      assert.ok(reply.status === 200 || reply.status === 400, `status ${reply.status}`)
      if (reply.status === 200) {
        const seenByService = JSON.parse(reply.text.slice(reply.text.indexOf('\r\n\r\n') + 4))
        assert.deepEqual([seenByService.xa, seenByService.xb], ['b', 'c'], 'two headers, never one value with a line break in it')
      }
    })

    it('still serves ordinary requests after all that', async () => {
      const reply = await rawRequest(base, rawHead('POST /api/ok HTTP/1.1', ['Host: localhost', 'Content-Length: 2']) + 'hi')
      assert.equal(reply.status, 200)
    })
  })
}
