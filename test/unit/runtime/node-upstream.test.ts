import assert from 'node:assert/strict'
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { UpstreamError } from '../../../src/core/upstream-error.ts'
import { nodeUpstream } from '../../../src/runtime/node-upstream.ts'
import type { UpstreamRequest } from '../../../src/core/host.ts'

/** A TCP server that answers each connection with fixed bytes (or nothing), to play a broken upstream. */
async function rawServer(reply: string | undefined): Promise<{ origin: string; close(): void }> {
  const sockets = new Set<Socket>()
  const server: Server = createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    socket.on('close', () => sockets.delete(socket))
    if (reply !== undefined) socket.once('data', () => socket.end(reply))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    origin: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    close() {
      for (const socket of sockets) socket.destroy()
      server.close()
    },
  }
}

function call(url: string, extra: Partial<UpstreamRequest> = {}) {
  return nodeUpstream({ url, method: 'GET', headers: new Headers(), body: null, signal: new AbortController().signal, connectTimeoutMs: 5_000, ...extra })
}

async function failureOf(answer: Promise<unknown>): Promise<string> {
  const error = await answer.then(
    () => assert.fail('expected the call to fail'),
    (e: unknown) => e,
  )
  if (error instanceof UpstreamError) return error.failure
  return `not an UpstreamError: ${String(error)}`
}

describe("Node's upstream client (undici dispatch)", () => {
  const servers: Array<{ close(): void }> = []
  let garbage: string
  let badStatus: string
  let silent: string
  before(async () => {
    const made = await Promise.all([rawServer('NOT HTTP AT ALL\r\n\r\n'), rawServer('HTTP/1.1 999 Odd\r\ncontent-length: 0\r\n\r\n'), rawServer(undefined)])
    servers.push(...made)
    ;[garbage, badStatus, silent] = made.map((server) => server.origin) as [string, string, string]
  })
  after(() => {
    for (const server of servers) server.close()
  })

  test('a response that is not HTTP, or has a status past 599, is a protocol error, not a reset', async () => {
    assert.equal(await failureOf(call(`http://${garbage}/`)), 'protocol-error')
    assert.equal(await failureOf(call(`http://${badStatus}/`)), 'protocol-error')
  })

  test('a refused connection is a connect failure; a TLS handshake that never ends hits connect_timeout', async () => {
    const refused = await rawServer(undefined)
    refused.close()
    assert.equal(await failureOf(call(`http://${refused.origin}/`)), 'connect-failure')
    assert.equal(await failureOf(call(`https://${silent}/`, { connectTimeoutMs: 100 })), 'connect-timeout')
  })

  test('an abort while still connecting settles the call with the abort reason, without waiting for the connect', { timeout: 10_000 }, async () => {
    const controller = new AbortController()
    const reason = new Error('route deadline')
    // connect_timeout is far beyond the test's limit: only the abort can settle this call in time.
    const pending = call(`https://${silent}/`, { signal: controller.signal, connectTimeoutMs: 600_000 })
    setImmediate(() => controller.abort(reason))
    await assert.rejects(pending, (error) => error === reason)
  })
})
