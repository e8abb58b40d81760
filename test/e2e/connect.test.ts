import assert from 'node:assert/strict'
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { request, startGateway, targets } from './harness.ts'

/**
 * An https endpoint whose TLS handshake never finishes: the TCP connection is accepted and then
 * nothing is ever said, so the gateway is stuck "connecting" until a deadline cuts it.
 */
async function stalledTls(): Promise<{ url: string; close(): void }> {
  const sockets = new Set<Socket>()
  const server: Server = createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close() {
      for (const socket of sockets) socket.destroy()
      server.close()
    },
  }
}

function policy(endpoint: string, timeout: string, connectTimeout: string): string {
  return `
[gateway]
service = "connect"
admin = "127.0.0.1:0"

[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"

[upstreams.stalled]
endpoints = ["${endpoint}"]
connect_timeout = "${connectTimeout}"

[[routes]]
listener = "ingress"
path = "/*"
upstream = "stalled"
timeout = "${timeout}"
`
}

for (const target of targets()) {
  describe(`connecting to an upstream on ${target.name}`, { skip: target.missing }, () => {
    let stalled: Awaited<ReturnType<typeof stalledTls>>
    before(async () => {
      stalled = await stalledTls()
    })
    after(() => stalled.close())

    // The test's own limit is far below connect_timeout: a gateway that waits for the connect
    // instead of its route deadline fails by timing out here, not by a measured duration.
    it('the route timeout cuts a connection that never completes', { timeout: 15_000 }, async () => {
      const gateway = await startGateway(target, policy(stalled.url, '300ms', '60s'))
      try {
        const reply = await request(`${gateway.listeners.ingress}/x`)
        assert.equal(reply.status, 504)
        assert.equal(reply.json().code, 'upstream_timeout')
      } finally {
        await gateway.stop()
      }
    })

    it('connect_timeout fails a connection that never completes, before the route timeout', { timeout: 15_000 }, async () => {
      const gateway = await startGateway(target, policy(stalled.url, '60s', '200ms'))
      try {
        const reply = await request(`${gateway.listeners.ingress}/x`)
        assert.equal(reply.status, 502)
        assert.equal(reply.json().code, 'upstream_unavailable')
      } finally {
        await gateway.stop()
      }
    })
  })
}
