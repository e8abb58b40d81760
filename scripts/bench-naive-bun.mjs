// The naive Bun proxy in `npm run bench`: `Bun.serve` handing each request to `fetch` and returning its
// Response, nothing else. `npm run bench` compiles it with scripts/build.mjs (`bun build --compile`,
// the binary's own flags) into a temporary directory, so it is the floor of the binary's runtime.
//
//   pillion-linux-x64 LISTEN_PORT UPSTREAM_PORT       (as compiled; `bun scripts/bench-naive-bun.mjs` too)
const [port, upstreamPort] = process.argv.slice(2).map(Number)
if (!port || !upstreamPort) {
  console.error('usage: bench-naive-bun LISTEN_PORT UPSTREAM_PORT')
  process.exit(2)
}
const origin = `http://127.0.0.1:${upstreamPort}`
Bun.serve({
  hostname: '127.0.0.1',
  port,
  development: false,
  fetch(request) {
    const url = request.url
    const path = url.slice(url.indexOf('/', url.indexOf('://') + 3))
    return fetch(origin + path, { method: request.method, headers: request.headers, body: request.body, redirect: 'manual', decompress: false })
  },
})
console.log('ready')
process.on('SIGTERM', () => process.exit(0))
