// A raw-socket fuzzer: thousands of generated and mutated request heads (bad framing, odd whitespace,
// duplicate and conflicting headers, invalid bytes, absolute and asterisk forms) sent at a running
// gateway on each target. The gateway must never crash, never answer 5xx because of what a client
// sent, and keep serving well-formed requests throughout.
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import { startGateway, startUpstream, targets, type Gateway, type Upstream } from './harness.ts'

const CASES = Number(process.env.PILLION_FUZZ_CASES ?? 2000)
const SEED = Number(process.env.PILLION_FUZZ_SEED ?? 20261203)
const PARALLEL = 16
/** How long a case may keep its socket open after the client has sent everything and half-closed. */
const CASE_BOUND_MS = 5000

const method = fc.constantFrom('GET', 'GET', 'POST', 'HEAD', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'get', 'CONNECT', 'TRACE', 'BREW', 'G ET', '', 'GET\u0000', 'PRI')
const target = fc.constantFrom(
  '/echo', '/echo', '/', '*', 'http://127.0.0.1/echo', 'https://evil.example/echo', '//echo', '/echo/../admin', '/%2e%2e/etc',
  '/echo%2fx', '/%zz', '/echo?x=1&x=2', '/echo#frag', 'echo', '/echo;x=1', `/${'a'.repeat(9000)}`, '/\u00ff', '/ x', '/echo?\u0001',
)
const version = fc.constantFrom('HTTP/1.1', 'HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/1.2', 'HTTP/1', 'http/1.1', 'HTTP/1.1 ', '')
const space = fc.constantFrom(' ', ' ', ' ', '  ', '\t')
const lineEnd = fc.constantFrom('\r\n', '\r\n', '\r\n', '\r\n', '\n', '\r')
const header = fc.constantFrom(
  'Host: 127.0.0.1', 'Host: 127.0.0.1', 'Host: other.example', 'Host:', 'Host: a b', 'host: 127.0.0.1:99999',
  'Content-Length: 0', 'Content-Length: 5', 'Content-Length: -1', 'Content-Length: 1e3', 'Content-Length: 5, 5', 'Content-Length: 99999999999999999999', 'Content-Length:  3 ',
  'Transfer-Encoding: chunked', 'Transfer-Encoding: chunked, identity', 'Transfer-Encoding:  chunked', 'Transfer-Encoding: xchunked', 'Transfer-Encoding: gzip',
  'Connection: close', 'Connection: keep-alive, upgrade', 'Upgrade: websocket', 'Upgrade: h2c', 'Expect: 100-continue', 'Expect: nonsense',
  'X-Forwarded-For: 1.2.3.4, ,::1, garbage', 'X-Request-Id: \u00ff\u00fe', 'Accept: */*', 'Cookie: a=b; ; c', 'Authorization: Bearer', 'Authorization: Bearer a.b.c',
  'Name With Space: x', 'Colon-After-Space : x', ': no name', 'X-Control: a\u0001b', 'X-Del: \u007f', 'X-Nul: a\u0000b', ' folded-continuation', 'X-Long: ' + 'v'.repeat(20_000),
  'Content-Type: application/json', 'Te: trailers', 'Max-Forwards: -1', 'Proxy-Connection: keep-alive', 'Keep-Alive: timeout=-5',
)
const body = fc.constantFrom('', '', 'hello', '5\r\nhello\r\n0\r\n\r\n', 'zz\r\nhello\r\n0\r\n\r\n', '5\r\nhel', '0\r\n\r\n', '{"a":1}', '\u0000\u0001\u0002')

const head = fc.record({ method, space, target, version, lineEnd, headers: fc.array(header, { maxLength: 8 }), body })
const mutation = fc.record({ at: fc.nat(), kind: fc.constantFrom('flip', 'insert', 'delete', 'cut'), byte: fc.integer({ min: 0, max: 255 }) })
/** Sent and then half-closed: whatever of it a parser reads, the client says it has nothing more. */
const wild = fc.record({ head, mutations: fc.array(mutation, { maxLength: 3 }), complete: fc.constant(false) })

/** Requests every parser reads, with odd but legal parts: these reach routing, policies and the upstream. */
const plausibleHeader = fc.constantFrom(
  'Host: 127.0.0.1', 'Host: other.example', 'X-Forwarded-For: 1.2.3.4, ,::1, garbage', 'X-Forwarded-Proto: gopher', 'Forwarded: for=unknown;proto=http',
  'X-Request-Id: ' + 'r'.repeat(300), 'X-Request-Id: a b', 'Cookie: a=b; ; c', 'Authorization: Bearer a.b.c', 'Authorization: Basic !!', 'Accept-Encoding: gzip, br, *;q=0',
  'Range: bytes=0-0, -1', 'If-None-Match: "x", W/"y"', 'Expect: 100-continue', 'Connection: keep-alive, x-custom', 'X-Custom: 1', 'Te: trailers', 'Max-Forwards: 0',
  'Traceparent: 00-zz-zz-01', 'Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 'B3: 1-2-3', 'Content-Type: multipart/form-data; boundary=', 'X-Long: ' + 'v'.repeat(6000),
)
const plausibleTarget = fc.constantFrom('/echo', '/echo/', '/echo/a/../b', '/echo/%41', '/echo/./x', '/echo?a=%zz', '/echo?' + 'q'.repeat(2000), '/echo/%e2%82%ac', '/nope', 'http://127.0.0.1/echo', '/ECHO')
const plausibleBody = fc.constantFrom({ headers: [], body: '' }, { headers: ['Content-Length: 5'], body: 'hello' }, { headers: ['Transfer-Encoding: chunked'], body: '5\r\nhello\r\n0\r\n\r\n' }, { headers: ['Content-Length: 0'], body: '' })
const plausible = fc
  .record({ method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'PROPFIND'), target: plausibleTarget, headers: fc.array(plausibleHeader, { maxLength: 6 }), framing: plausibleBody })
  .map(({ method, target, headers, framing }) => ({
    head: { method, space: ' ', target, version: 'HTTP/1.1', lineEnd: '\r\n', headers: ['Host: 127.0.0.1', ...headers, ...framing.headers, 'Connection: close'], body: framing.body },
    mutations: [],
    complete: true,
  }))
const fuzzCase = fc.oneof(wild, plausible)
type FuzzCase = typeof fuzzCase extends fc.Arbitrary<infer T> ? T : never

function bytesOf({ head: h, mutations }: FuzzCase): Buffer {
  const lines = [`${h.method}${h.space}${h.target}${h.space}${h.version}`.trimEnd(), ...h.headers]
  let bytes = Buffer.from(`${lines.join(h.lineEnd)}${h.lineEnd}${h.lineEnd}${h.body}`, 'latin1')
  for (const { at, kind, byte } of mutations) {
    const i = at % Math.max(bytes.length, 1)
    if (kind === 'flip') bytes[i] = byte
    else if (kind === 'insert') bytes = Buffer.concat([bytes.subarray(0, i), Buffer.from([byte]), bytes.subarray(i)])
    else if (kind === 'delete') bytes = Buffer.concat([bytes.subarray(0, i), bytes.subarray(i + 1)])
    else bytes = bytes.subarray(0, i)
  }
  return bytes
}

/**
 * Bun's HTTP parser (uWebSockets) answers request lines it cannot read (a version token other than
 * "HTTP/1.x", tabs for spaces, bare LF line ends) with exactly these bytes, before any of Pillion's
 * code runs. Every answer Pillion writes carries an x-request-id; this one cannot.
 */
const BUN_PARSER_505 = 'HTTP/1.1 505 HTTP Version Not Supported\r\nConnection: close\r\n\r\n'

interface Outcome {
  /** Status codes of every response the gateway wrote on the connection (it may be more than one). */
  statuses: number[]
  /** Those of the responses that are the runtime parser's, not Pillion's. */
  parserRefusals: number
  /** The connection was still open CASE_BOUND_MS after the client finished sending. */
  lingered: boolean
}

/** Sends the bytes and reads until the gateway closes the connection (or the bound). */
function send(base: string, bytes: Buffer, complete: boolean): Promise<Outcome> {
  const url = new URL(base)
  return new Promise((resolve) => {
    const socket = connect({ port: Number(url.port), host: url.hostname, allowHalfOpen: true })
    let text = ''
    let lingered = false
    const bound = setTimeout(() => {
      lingered = true
      socket.destroy()
    }, CASE_BOUND_MS)
    socket.setEncoding('latin1')
    socket.on('data', (chunk: string) => (text += chunk))
    socket.on('error', () => {})
    socket.on('end', () => socket.end())
    socket.on('close', () => {
      clearTimeout(bound)
      const statuses = [...text.matchAll(/HTTP\/1\.[01] (\d{3}) /g)].map((match) => Number(match[1]))
      resolve({ statuses, parserRefusals: text.split(BUN_PARSER_505).length - 1, lingered })
    })
    // A complete request is answered and the connection closed (it says "Connection: close"); a
    // half-close there would tell the gateway the client went away, and the answer would be dropped.
    if (complete) socket.write(bytes)
    else socket.end(bytes)
  })
}

async function healthy(gateway: Gateway): Promise<void> {
  const response = await fetch(`${gateway.listeners.in}/echo`)
  assert.equal(response.status, 200, await response.text())
}

for (const t of targets()) {
  describe(`raw request fuzzing [${t.name}]`, { skip: t.missing }, () => {
    let upstream: Upstream
    let gateway: Gateway

    before(async () => {
      upstream = await startUpstream((req, res) => {
        req.resume()
        req.on('end', () => res.end('ok'))
      })
      gateway = await startGateway(
        t,
        `
[gateway]
service = "fuzz"
admin = "127.0.0.1:0"
[listeners.in]
listen = "127.0.0.1:0"
direction = "ingress"
[upstreams.echo]
endpoints = ["${upstream.url}"]
[[routes]]
listener = "in"
path = "/echo/*"
upstream = "echo"
[[routes]]
listener = "in"
path = "/echo"
upstream = "echo"
`,
      )
    })

    after(async () => {
      await gateway?.stop()
      await upstream?.close()
    })

    it(`answers ${CASES} generated and mutated heads without a crash or a 5xx, and keeps serving`, async () => {
      const cases = fc.sample(fuzzCase, { numRuns: CASES, seed: SEED })
      const counts = new Map<string, number>()
      const serverErrors: string[] = []
      let next = 0
      const worker = async () => {
        while (next < cases.length) {
          const index = next++
          const fuzz = cases[index]!
          const bytes = bytesOf(fuzz)
          const { statuses, parserRefusals, lingered } = await send(gateway.listeners.in!, bytes, fuzz.complete)
          const key = lingered ? 'lingered' : statuses.length === 0 ? 'closed without answer' : parserRefusals > 0 ? `${statuses.join('+')} from ${t.name}'s parser` : statuses.join('+')
          counts.set(key, (counts.get(key) ?? 0) + 1)
          const ourServerErrors = statuses.filter((status) => status >= 500).length - parserRefusals
          const bunParses = t.name === 'bun' || t.name === 'binary'
          if (ourServerErrors > 0 || (parserRefusals > 0 && !bunParses) || (fuzz.complete && (lingered || statuses.length === 0))) {
            serverErrors.push(`case ${index} (seed ${SEED}): ${statuses.join('+')} for ${JSON.stringify(bytes.toString('latin1').slice(0, 300))}`)
          }
          if (index % 250 === 249) await healthy(gateway)
        }
      }
      await Promise.all(Array.from({ length: PARALLEL }, worker))
      console.log(`[${t.name}] outcomes of ${CASES} cases: ${JSON.stringify(Object.fromEntries([...counts].sort((a, b) => b[1] - a[1])))}`)
      assert.deepEqual(serverErrors.slice(0, 10), [], `${serverErrors.length} answers were 5xx, or a complete request went unanswered`)
      assert.equal(gateway.process.exitCode, null, `the gateway exited: ${gateway.stderr.slice(-5).join('\n')}`)
      await healthy(gateway)
      const crashes = gateway.stderr.filter((line) => /uncaught|unhandled|panic|segmentation|TypeError|RangeError/i.test(line))
      assert.deepEqual(crashes, [])
    })
  })
}
