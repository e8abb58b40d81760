// The naive Bun proxy in `npm run bench`: `Bun.serve` handing each request to `fetch` and returning its
// Response, nothing else. `npm run bench` compiles it with scripts/build.mjs (`bun build --compile`,
// the binary's own flags) into a temporary directory, so it is the floor of the binary's runtime.
//
//   pillion-linux-x64 LISTEN_PORT UPSTREAM_PORT [STEPS]   (as compiled; `bun scripts/bench-naive-bun.mjs` too)
//
// STEPS (0 unless given) adds what a gateway cannot skip, one step at a time, to price each
// (scripts/bench-compare.mjs --ladder runs them side by side):
//   1  an AbortController's signal on fetch, aborted when the client's request.signal is
//   2  headers copied, the hop-by-hop ones deleted, X-Forwarded-*, Via and X-Request-Id set
//   3  the answer's body read whole and sent in a new Response with the answer's headers, edited
//   4  the client's address from server.requestIP() for X-Forwarded-For
const [port, upstreamPort, steps = 0] = process.argv.slice(2).map(Number)
if (!port || !upstreamPort) {
  console.error('usage: bench-naive-bun LISTEN_PORT UPSTREAM_PORT [STEPS]')
  process.exit(2)
}
const origin = `http://127.0.0.1:${upstreamPort}`
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'expect']
const pathOf = (url) => url.slice(url.indexOf('/', url.indexOf('://') + 3))

async function gateway(request, server) {
  const controller = new AbortController()
  request.signal.addEventListener('abort', () => controller.abort())
  let headers = request.headers
  if (steps >= 2) {
    headers = new Headers(request.headers)
    for (const name of HOP_BY_HOP) headers.delete(name)
    headers.set('x-forwarded-for', steps >= 4 ? (server.requestIP(request)?.address ?? '') : '127.0.0.1')
    headers.set('x-forwarded-proto', 'http')
    headers.set('x-forwarded-host', request.headers.get('host') ?? '')
    headers.set('via', '1.1 naive')
    headers.set('x-request-id', crypto.randomUUID())
  }
  const init = { method: request.method, headers, body: request.body, redirect: 'manual', decompress: false, signal: controller.signal }
  const response = await fetch(origin + pathOf(request.url), init)
  if (steps < 3) return response
  const bytes = new Uint8Array(await response.arrayBuffer())
  const answer = new Response(bytes, { status: response.status, statusText: response.statusText, headers: response.headers })
  answer.headers.delete('connection')
  answer.headers.delete('keep-alive')
  answer.headers.set('x-request-id', 'naive')
  return answer
}

Bun.serve({
  hostname: '127.0.0.1',
  port,
  development: false,
  fetch:
    steps === 0
      ? (request) => fetch(origin + pathOf(request.url), { method: request.method, headers: request.headers, body: request.body, redirect: 'manual', decompress: false })
      : gateway,
})
console.log('ready')
process.on('SIGTERM', () => process.exit(0))
