// `npm run bench:pipeline`: what each policy costs per request, in nanoseconds, without sockets.
// Each case is one route with one policy (or one observer) added to a bare route; its chain runs
// in-process against an upstream client that answers at once, so what is measured is Pillion's own
// work: matching, headers, the exchange, the policy, the body watch. A regression in one policy shows
// as a jump in its "over bare" column. Nothing here touches the network.
//
//   bun scripts/bench-pipeline.ts [REQUESTS]                 (default 20000 per case)
//   node --import tsx scripts/bench-pipeline.ts [REQUESTS]
//   BENCH_CASES=authz npm run bench:pipeline                 (only cases whose name matches; bare always)
//
// Cases are measured in short rounds, interleaved; a case's delta is the median over rounds of its
// time minus bare's in the same round, so a GC pause or a noisy neighbour lands on every case alike.
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import { createGateway } from '../src/gateway/build.ts'
import { loadConfigText } from '../src/config/load.ts'
import { EventBus } from '../src/core/events.ts'
import type { Logger } from '../src/core/log.ts'
import { createObservability, type Observability } from '../src/observability/observability.ts'
import type { AppendSink, UpstreamClient } from '../src/core/host.ts'

const REQUESTS = Number(process.argv[2] ?? 20_000)
const ROUNDS = 20
const BODY = 'x'.repeat(100)
const API_KEY = 'bench-api-key-0123456789'
const BODY_BYTES = new TextEncoder().encode(BODY)
const send: UpstreamClient = async () => ({
  status: 200,
  statusText: 'OK',
  headers: new Headers({ 'content-type': 'text/plain', 'content-length': '100', server: 'bench' }),
  body: BODY_BYTES,
})
const quiet: Logger = { log() {} }
const discard: AppendSink = { write: async () => {}, close: async () => {} }

async function sha256Hex(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)))
  return [...digest].map((b) => b.toString(16).padStart(2, '0')).join('')
}
const host = {
  upstream: send,
  resolveDns: async () => [],
  readTextFile: async () => JSON.stringify({ [await sha256Hex(API_KEY)]: 'bench-consumer' }),
  watchFile: () => () => {},
}
const observabilityHost = { name: 'node' as const, version: '0', upstream: send, openAppendSink: async () => discard }

// A key pair made for this run: the jwt case verifies a real RS256 signature on every request.
const { publicKey, privateKey } = await generateKeyPair('RS256', { extractable: true })
const jwk = { ...(await exportJWK(publicKey)), kid: 'bench', alg: 'RS256' }
const token = await new SignJWT({ sub: 'bench-user', scope: 'items:read items:write', realm_access: { roles: ['clerk'] } })
  .setProtectedHeader({ alg: 'RS256', kid: 'bench' })
  .setIssuer('https://bench.local')
  .setAudience('bench')
  .setExpirationTime('1h')
  .sign(privateKey)
const jwtPolicy = `[routes.jwt]
keys = [ { ${Object.entries(jwk).map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join(', ')} } ]
issuer = "https://bench.local"
audience = "bench"
required_claims = ["sub"]`

interface Case {
  /** Keys under [[routes]] (before any sub-table). */
  route?: string
  /** Route sub-tables ([routes.x]) after the keys. */
  tables?: string
  /** Top-level tables ([audit], [observability...]). */
  top?: string
  /** The route splits instead of naming one upstream. */
  split?: boolean
  /** Keys of the upstream "app" beyond its endpoint, which is then https. */
  upstream?: string
  headers?: Record<string, string>
  /** Metrics, access log and traces, as `pillion run` wires them. */
  observe?: boolean
}

const ACCESS_LOG_OFF = '[observability.access_log]\nto = "off"'
const CASES: Record<string, Case> = {
  bare: {},
  timeout: { route: 'timeout = "15s"' },
  retry: { route: 'retry = { attempts = 3 }' },
  circuit_breaker: { tables: '[routes.circuit_breaker]' },
  bulkhead: { route: 'bulkhead = { max_concurrent = 1000 }' },
  fallback: { route: 'fallback = { status = 200, body = "degraded" }' },
  rate_limit: { route: 'rate_limit = [ { rate = "10000000/s", key = "client_ip" } ]' },
  'jwt (RS256, inline key)': { tables: jwtPolicy, headers: { authorization: `Bearer ${token}` } },
  api_key: { route: 'api_key = { header = "x-api-key", keys_file = "keys.json" }', headers: { 'x-api-key': API_KEY } },
  'authz (3 rules, third matches)': {
    tables: '[routes.authz]\n[[routes.authz.rules]]\nmethods = ["DELETE"]\ndeny = true\n[[routes.authz.rules]]\npaths = ["/admin/*"]\ndeny = true\n[[routes.authz.rules]]\nmethods = ["GET"]\npaths = ["/api/*"]',
  },
  'jwt + authz (2 claims)': {
    tables: `${jwtPolicy}\n[routes.authz]\nclaims = { scope = "items:read", "realm_access.roles" = ["clerk", "admin"] }`,
    headers: { authorization: `Bearer ${token}` },
  },
  'ext_authz (instant authorizer)': { tables: '[routes.ext_authz]\nurl = "http://127.0.0.1:9/check"\nupstream_headers = ["x-user-id"]', headers: { authorization: 'Bearer opaque' } },
  'ext_authz (cached decision)': {
    tables: '[routes.ext_authz]\nurl = "http://127.0.0.1:9/check"\nupstream_headers = ["x-user-id"]\ncache = { key = "${header.authorization}", ttl = "1h" }',
    headers: { authorization: 'Bearer opaque' },
  },
  'split (2 upstreams)': { split: true },
  'upstream mTLS keys': { upstream: 'ca = "ca.pem"\ncert = "client.pem"\nkey = "client-key.pem"\nserver_name = "app.internal"' },
  'mirror (percent = 0)': { route: 'mirror = { upstream = "app", percent = 0 }' },
  'fault (0%)': { route: 'fault = { delay = { percent = 0, duration = "1s" }, abort = { percent = 0, status = 503 } }' },
  'limits (defaults)': { route: 'limits = {}' },
  'cors (with Origin)': { route: 'cors = { origins = ["https://app.example"] }', headers: { origin: 'https://app.example' } },
  ip: { route: 'ip = { allow = ["127.0.0.0/8"] }' },
  secure_headers: { route: 'secure_headers = true' },
  strip_response_headers: { route: 'strip_response_headers = ["server"]' },
  'request_headers (4 edits, 3 vars)': {
    tables: '[routes.request_headers]\nset = { "x-user" = "${header.user-agent}", "x-route" = "${route}@${upstream}" }\nadd = { "x-tags" = "gw" }\nremove = ["accept"]',
  },
  'response_headers (4 edits, 1 var)': {
    tables: '[routes.response_headers]\nset = { "cache-control" = "no-store", "x-served-by" = "${upstream}" }\nadd = { vary = "accept" }\nremove = ["server"]',
  },
  'audit (every request)': { top: '[audit]\nsink = "http://127.0.0.1:9/audit"' },
  metrics: { observe: true, top: ACCESS_LOG_OFF },
  'metrics + access log': { observe: true, top: '[observability.access_log]\nto = "stdout"' },
  'metrics + traces (sample 1)': { observe: true, top: `${ACCESS_LOG_OFF}\n[observability.traces]\notlp = "http://127.0.0.1:9/v1/traces"\nsample = 1.0` },
  'full chain (as npm run bench)': {
    observe: true,
    top: '[observability.access_log]\nto = "stdout"',
    route: 'timeout = "15s"\nrate_limit = [ { rate = "10000000/s", key = "client_ip" } ]\nretry = { attempts = 2 }\nbulkhead = { max_concurrent = 10000 }',
    tables: `[routes.circuit_breaker]\n${jwtPolicy}`,
    headers: { authorization: `Bearer ${token}` },
  },
}

function policy(c: Case): string {
  const route = c.route ?? ''
  const timeout = /^timeout/m.test(route) ? '' : 'timeout = "0s"\n'
  const target = c.split ? '' : 'upstream = "app"\n'
  const split = c.split ? '[[routes.split]]\nupstream = "app"\nweight = 90\n[[routes.split]]\nupstream = "canary"\nweight = 10\n' : ''
  return `[gateway]
service = "bench"
[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"
[upstreams.app]
endpoints = ["${c.upstream === undefined ? 'http' : 'https'}://127.0.0.1:1"]
${c.upstream ?? ''}
[upstreams.canary]
endpoints = ["http://127.0.0.1:2"]
${c.top ?? ACCESS_LOG_OFF}
[[routes]]
listener = "ingress"
path = "/*"
${target}${timeout}${route}
${c.tables ?? ''}
${split}`
}

interface Built {
  run(n: number): Promise<void>
  close(): Promise<void>
}

async function build(name: string, c: Case): Promise<Built> {
  const config = loadConfigText(policy(c), `${name.replace(/\W+/g, '-')}.toml`)
  const events = new EventBus()
  let observability: Observability | undefined
  if (c.observe) {
    observability = await createObservability(config, observabilityHost, quiet, 'bench')
    observability.metrics.watch(events)
  }
  const { listeners } = createGateway(config, host, quiet, observability?.observers ?? [], events)
  const app = listeners[0]!.app
  const client = { remoteAddress: '127.0.0.1' }
  const headers = { 'user-agent': 'bench', accept: '*/*', ...c.headers }
  const once = async () => {
    const response = await app.fetch(new Request('http://gw.local/api/items?x=1', { headers }), client)
    await response.arrayBuffer()
    return response.status
  }
  // Keys files and the like load in the background: give them a moment, then insist on a 200.
  for (let i = 0; i < 100 && (await once()) !== 200; i++) await new Promise((resolve) => setTimeout(resolve, 10))
  const status = await once()
  if (status !== 200) throw new Error(`case "${name}" answers ${status}, not 200: it would measure the wrong thing`)
  return {
    async run(n) {
      for (let i = 0; i < n; i++) {
        const response = await app.fetch(new Request('http://gw.local/api/items?x=1', { headers }), client)
        await response.arrayBuffer()
      }
    },
    close: async () => observability?.close(0),
  }
}

const floor: Built = {
  async run(n) {
    for (let i = 0; i < n; i++) {
      const request = new Request('http://gw.local/api/items?x=1', { headers: { 'user-agent': 'bench', accept: '*/*' } })
      const answer = await send({ url: '', method: 'GET', headers: request.headers, body: null, signal: request.signal, connectTimeoutMs: 0 })
      await new Response(answer.body, { status: answer.status, headers: answer.headers }).arrayBuffer()
    }
  },
  close: async () => {},
}

const runtime = typeof (globalThis as { Bun?: unknown }).Bun !== 'undefined' ? 'bun' : typeof (globalThis as { Deno?: unknown }).Deno !== 'undefined' ? 'deno' : 'node'
console.log(`pipeline cost per request: ${runtime}, ${REQUESTS} requests per case in ${ROUNDS} interleaved rounds, medians; in-process, the upstream answers at once`)

const built = new Map<string, Built>([['floor (Request + Response only)', floor]])
const only = process.env.BENCH_CASES === undefined ? undefined : new RegExp(process.env.BENCH_CASES)
for (const [name, c] of Object.entries(CASES)) if (name === 'bare' || only === undefined || only.test(name)) built.set(name, await build(name, c))
const perRound = Math.max(1, Math.round(REQUESTS / ROUNDS))
for (const b of built.values()) await b.run(Math.min(perRound, 5_000)) // warm up the JIT on every path first
const timings = new Map<string, number[]>([...built.keys()].map((name) => [name, []]))
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, b] of built) {
    const started = performance.now()
    await b.run(perRound)
    timings.get(name)!.push(((performance.now() - started) * 1e6) / perRound)
  }
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}
/** Median over rounds of (case − base) within each round. */
const deltaOver = (name: string, base: string) => median(timings.get(name)!.map((value, round) => value - timings.get(base)![round]!))
const quartiles = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b)
  return [sorted[Math.floor(sorted.length / 4)]!, sorted[Math.floor((sorted.length * 3) / 4)]!]
}
console.log(`${'case'.padEnd(32)} ${'ns/req'.padStart(8)}  ${'delta'.padStart(9)}             middle half of rounds`)
for (const [name, values] of timings) {
  const over = name.startsWith('floor') ? '' : name === 'bare' ? `${sign(deltaOver(name, 'floor (Request + Response only)'))} over floor` : `${sign(deltaOver(name, 'bare'))} over bare`
  const [low, high] = quartiles(values)
  console.log(`${name.padEnd(32)} ${median(values).toFixed(0).padStart(8)}  ${over.padEnd(20)} ${low.toFixed(0)}–${high.toFixed(0)}`)
}
if (process.env.BENCH_DEBUG) for (const [name, values] of timings) console.log(name, values.map((v) => v.toFixed(0)).join(" "))
for (const b of built.values()) await b.close()

function sign(delta: number): string {
  return `${delta >= 0 ? '+' : ''}${delta.toFixed(0)}`.padStart(9)
}

// Policies keep timers (buckets, breaker windows, flushes); this is a one-shot measurement.
process.exit(0)
