#!/usr/bin/env node
// The peers of scripts/bench-websocket.mjs, each its own Node process, on the `ws` package, 127.0.0.1 only.
//
//   node scripts/bench-websocket-peer.mjs echo PORT
//       a WebSocket echo server (no permessage-deflate): every message goes back as it came, text or binary
//   node scripts/bench-websocket-peer.mjs idle URL COUNT
//       the idle clients. Opens 50 connections, exchanges a message on each, closes them (warm-up) and
//       prints {"event":"warm"}; then, each time told on stdin:
//         "open"   opens COUNT connections (at most 100 handshakes at a time), each sends one 64-byte message
//                  and waits for its echo, then stays idle; prints {"event":"open","opened":N,"failed":F,"ms":T}
//         "close"  closes them all (1000) and waits for the closes; prints {"event":"closed","closed":N,"ms":T}
//                  and exits
//       Gives up on a handshake after 30 s and on the whole opening after 180 s (counted as failed).
import { createInterface } from 'node:readline'
import { WebSocket, WebSocketServer } from 'ws'

const [role, ...rest] = process.argv.slice(2)
process.on('SIGTERM', () => process.exit(0))

if (role === 'echo') {
  const port = Number(rest[0])
  const server = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false, clientTracking: false, backlog: 4096 })
  server.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
    ws.on('error', () => {})
  })
  server.on('listening', () => console.log(JSON.stringify({ event: 'listening', port })))
} else if (role === 'idle') {
  const [url, countText] = rest
  const count = Number(countText)
  const BATCH = 100
  const PAYLOAD = 'i'.repeat(64)
  const say = (object) => console.log(JSON.stringify(object))

  /** Opens one connection, sends a message, resolves with the socket once the echo is back (or with null). */
  const openOne = () =>
    new Promise((resolve) => {
      const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: 30_000 })
      const timer = setTimeout(() => done(null), 30_000)
      let settled = false
      function done(result) {
        if (settled) return
        settled = true
        clearTimeout(timer)
        if (result === null) ws.terminate()
        resolve(result)
      }
      ws.on('open', () => ws.send(PAYLOAD))
      ws.once('message', (data) => done(String(data) === PAYLOAD ? ws : null))
      ws.on('error', () => done(null))
      ws.on('close', () => done(null))
    })

  const openMany = async (n, deadline) => {
    const open = []
    let failed = 0
    for (let i = 0; i < n; i += BATCH) {
      if (performance.now() > deadline) {
        failed += n - i
        break
      }
      const batch = await Promise.all(Array.from({ length: Math.min(BATCH, n - i) }, openOne))
      for (const ws of batch) ws === null ? failed++ : open.push(ws)
    }
    return { open, failed }
  }

  const closeAll = (sockets) =>
    Promise.all(
      sockets.map(
        (ws) =>
          new Promise((resolve) => {
            if (ws.readyState === WebSocket.CLOSED) return resolve()
            const timer = setTimeout(() => {
              ws.terminate()
              resolve()
            }, 10_000)
            ws.once('close', () => {
              clearTimeout(timer)
              resolve()
            })
            ws.close(1000, 'bench done')
          }),
      ),
    )

  const warm = await openMany(50, performance.now() + 60_000)
  if (warm.failed > 0) {
    say({ event: 'error', message: `${warm.failed} of 50 warm-up connections failed` })
    process.exit(1)
  }
  await closeAll(warm.open)
  say({ event: 'warm' })

  let sockets = []
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'open') {
      const started = performance.now()
      const { open, failed } = await openMany(count, started + 180_000)
      sockets = open
      say({ event: 'open', opened: open.length, failed, ms: Math.round(performance.now() - started) })
    } else if (line === 'close') {
      const started = performance.now()
      await closeAll(sockets)
      say({ event: 'closed', closed: sockets.length, ms: Math.round(performance.now() - started) })
      process.exit(0)
    }
  }
  await closeAll(sockets)
  process.exit(0)
} else {
  console.error('usage: node scripts/bench-websocket-peer.mjs echo PORT | idle URL COUNT')
  process.exit(2)
}
