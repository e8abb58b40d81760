#!/usr/bin/env node
// The naive Node proxy in `npm run bench`: `node:http` handing each request to undici's keep-alive
// pool and piping the answer back, nothing else (no X-Forwarded-*, no request id). It is the floor of
// Pillion's Node target, which sends upstream with undici too.
//
//   node scripts/bench-naive-node.mjs LISTEN_PORT UPSTREAM_PORT     prints "ready" once listening
import { createServer } from 'node:http'
import { pipeline } from 'node:stream'
import { Pool } from 'undici'

const [port, upstreamPort] = process.argv.slice(2).map(Number)
if (!port || !upstreamPort) {
  console.error('usage: node scripts/bench-naive-node.mjs LISTEN_PORT UPSTREAM_PORT')
  process.exit(2)
}
const pool = new Pool(`http://127.0.0.1:${upstreamPort}`, { connections: 256 })
/** undici refuses these in a request (it manages the connection itself); Host comes from the pool's origin. */
const REFUSED = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'expect', 'host'])

createServer((req, res) => {
  const headers = []
  const raw = req.rawHeaders
  for (let i = 0; i < raw.length; i += 2) if (!REFUSED.has(raw[i].toLowerCase())) headers.push(raw[i], raw[i + 1])
  const bodiless = req.method === 'GET' || req.method === 'HEAD'
  pool.request({ path: req.url, method: req.method, headers, body: bodiless ? null : req }).then(
    (answer) => {
      res.writeHead(answer.statusCode, answer.headers)
      pipeline(answer.body, res, () => {})
    },
    () => {
      res.writeHead(502)
      res.end()
    },
  )
}).listen(port, '127.0.0.1', () => console.log('ready'))
process.on('SIGTERM', () => process.exit(0))
