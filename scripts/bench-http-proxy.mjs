#!/usr/bin/env node
// The Node peer in `npm run bench`: a plain `http-proxy` reverse proxy with a keep-alive agent, the way
// a Node team would write one by hand. Adds X-Forwarded-* like Pillion and NGINX do in the bench.
//
//   node scripts/bench-http-proxy.mjs LISTEN_PORT UPSTREAM_PORT     prints "ready" once listening
import { createServer, Agent } from 'node:http'
import httpProxy from 'http-proxy'

const [port, upstreamPort] = process.argv.slice(2).map(Number)
if (!port || !upstreamPort) {
  console.error('usage: node scripts/bench-http-proxy.mjs LISTEN_PORT UPSTREAM_PORT')
  process.exit(2)
}
const agent = new Agent({ keepAlive: true, maxSockets: 256 })
const proxy = httpProxy.createProxyServer({ target: `http://127.0.0.1:${upstreamPort}`, agent, xfwd: true })
proxy.on('error', (_error, _req, res) => {
  if (!res.headersSent) res.writeHead?.(502)
  res.end?.()
})
createServer((req, res) => proxy.web(req, res)).listen(port, '127.0.0.1', () => console.log('ready'))
process.on('SIGTERM', () => process.exit(0))
