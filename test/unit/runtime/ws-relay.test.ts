import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Timers } from '../../../src/core/timers.ts'
import type { WebSocketClose, WebSocketSession } from '../../../src/core/websocket.ts'
import {
  clientApiCloseCode,
  LiveBridges,
  messageBytes,
  sendableCloseCode,
  WebSocketBridge,
  type BridgeOptions,
  type RelayMessage,
  type RelaySocket,
  type UpstreamEvents,
} from '../../../src/runtime/ws-relay.ts'

/** A side of the bridge that records what the relay did to it. */
class FakeSocket implements RelaySocket {
  sent: RelayMessage[] = []
  closes: Array<{ code: number | undefined; reason: string | undefined }> = []
  pings: Uint8Array[] = []
  buffered = 0
  paused = false
  pauses = 0
  terminated = false
  send(message: RelayMessage): void {
    this.sent.push(message)
  }
  close(code?: number, reason?: string): void {
    this.closes.push({ code, reason })
  }
  bufferedAmount(): number {
    return this.buffered
  }
}

/** A side that can also pause, ping and be dropped, as Bun's are. */
class FullSocket extends FakeSocket {
  pause(): void {
    this.paused = true
    this.pauses++
  }
  resume(): void {
    this.paused = false
  }
  ping(data: Uint8Array): void {
    this.pings.push(data)
  }
  terminate(): void {
    this.terminated = true
  }
}

/** Timers on a clock that moves only when told. */
class FakeTimers implements Timers {
  time = 0
  #next = 1
  #pending = new Map<number, { at: number; callback: () => void }>()
  now(): number {
    return this.time
  }
  setTimeout(callback: () => void, ms: number): unknown {
    const id = this.#next++
    this.#pending.set(id, { at: this.time + ms, callback })
    return id
  }
  clearTimeout(handle: unknown): void {
    this.#pending.delete(handle as number)
  }
  get pending(): number {
    return this.#pending.size
  }
  advance(ms: number): void {
    const end = this.time + ms
    for (;;) {
      let first: [number, { at: number; callback: () => void }] | undefined
      for (const entry of this.#pending) if (entry[1].at <= end && (first === undefined || entry[1].at < first[1].at)) first = entry
      if (first === undefined) break
      this.#pending.delete(first[0])
      this.time = first[1].at
      first[1].callback()
    }
    this.time = end
  }
}

function fakeSession(terms: Partial<Pick<WebSocketSession, 'maxMessageBytes' | 'idleTimeoutMs'>> = {}) {
  const closes: WebSocketClose[] = []
  const session: WebSocketSession = {
    upstream: { protocol: '', headers: new Headers(), abandon() {} },
    route: 'chat',
    maxMessageBytes: terms.maxMessageBytes ?? 1024,
    idleTimeoutMs: terms.idleTimeoutMs ?? 0,
    closed: (close) => closes.push(close),
  }
  return { session, closes }
}

function bridged(terms: Parameters<typeof fakeSession>[0] = {}, options: BridgeOptions = {}, Socket: typeof FakeSocket = FullSocket) {
  const { session, closes } = fakeSession(terms)
  const timers = new FakeTimers()
  const client = new Socket()
  const upstream = new Socket()
  let finished = 0
  const bridge = new WebSocketBridge(session, upstream, { timers, onFinished: () => finished++, ...options })
  return { bridge, client, upstream, timers, closes, finished: () => finished }
}

const bytes = (...values: number[]) => new Uint8Array(values)

describe('the WebSocket bridge relays messages', () => {
  it('passes text and binary both ways and counts messages and payload bytes per direction', () => {
    const { bridge, client, upstream, closes } = bridged()
    bridge.clientOpened(client)
    bridge.fromClient('héllo')
    bridge.fromClient(bytes(1, 2, 3))
    bridge.fromUpstream('ok')
    bridge.fromUpstream(new ArrayBuffer(10))
    assert.deepEqual(upstream.sent, ['héllo', bytes(1, 2, 3)])
    assert.equal(client.sent.length, 2)
    assert.equal(client.sent[0], 'ok')
    bridge.clientClosed(1000, 'done')
    assert.equal(closes.length, 1)
    assert.deepEqual(closes[0], { code: 1000, reason: 'done', by: 'client', messagesIn: 2, bytesIn: 6 + 3, messagesOut: 2, bytesOut: 2 + 10 })
  })

  it('keeps what the upstream sends before the client opens, and sends it first, in order', () => {
    const { bridge, client } = bridged()
    bridge.fromUpstream('one')
    bridge.fromUpstream('two')
    bridge.clientOpened(client)
    bridge.fromUpstream('three')
    assert.deepEqual(client.sent, ['one', 'two', 'three'])
  })

  it('passes an upstream close that came before the client opened right after what was kept, and counts what was kept', () => {
    const { bridge, client, closes } = bridged()
    bridge.fromUpstream('last words')
    bridge.upstreamClosed(4005, 'early bye')
    assert.equal(closes.length, 1)
    assert.deepEqual({ ...closes[0], messagesOut: closes[0]!.messagesOut, bytesOut: closes[0]!.bytesOut }, {
      code: 4005, reason: 'early bye', by: 'upstream', messagesIn: 0, bytesIn: 0, messagesOut: 1, bytesOut: 10,
    })
    bridge.clientOpened(client)
    assert.deepEqual(client.sent, ['last words'])
    assert.deepEqual(client.closes, [{ code: 4005, reason: 'early bye' }])
  })

  it('drops messages once the bridge has ended', () => {
    const { bridge, client, upstream } = bridged()
    bridge.clientOpened(client)
    bridge.clientClosed(1000, '')
    bridge.fromUpstream('late')
    bridge.fromClient('late')
    assert.deepEqual(client.sent, [])
    assert.deepEqual(upstream.sent, [])
  })
})

describe('the WebSocket bridge passes closes on', () => {
  it('sends a client close code and reason to the upstream, and tells the session once', () => {
    const { bridge, client, upstream, closes, finished } = bridged()
    bridge.clientOpened(client)
    bridge.clientClosed(4002, 'client-bye')
    assert.deepEqual(upstream.closes, [{ code: 4002, reason: 'client-bye' }])
    assert.deepEqual(client.closes, [])
    assert.equal(finished(), 0)
    bridge.upstreamClosed(4002, 'client-bye')
    assert.equal(closes.length, 1)
    assert.equal(closes[0]!.by, 'client')
    assert.equal(finished(), 1)
  })

  it('sends an upstream close to the client', () => {
    const { bridge, client, upstream, closes } = bridged()
    bridge.clientOpened(client)
    bridge.upstreamClosed(1011, 'oops')
    assert.deepEqual(client.closes, [{ code: 1011, reason: 'oops' }])
    assert.deepEqual(upstream.closes, [])
    bridge.clientClosed(1011, 'oops')
    assert.deepEqual(closes.map((c) => [c.code, c.by]), [[1011, 'upstream']])
  })

  it('sends a close without a code (1005) or a connection gone (1006, or Deno’s 0) on as an empty close frame', () => {
    for (const [received, reported] of [[1005, 1005], [1006, 1006], [0, 1006]] as const) {
      const { bridge, client, upstream, closes } = bridged()
      bridge.clientOpened(client)
      bridge.clientClosed(received, '')
      assert.deepEqual(upstream.closes, [{ code: undefined, reason: '' }])
      assert.equal(closes[0]!.code, reported)
    }
  })

  it('ends when the client never got its upgrade, closing the upstream', () => {
    const { bridge, upstream, closes } = bridged()
    bridge.clientClosed(1006, '')
    assert.deepEqual(upstream.closes, [{ code: undefined, reason: '' }])
    assert.equal(closes[0]!.by, 'client')
  })

  it('drops a side that does not answer a close within the grace period, then finishes', () => {
    const { bridge, client, upstream, timers, finished } = bridged()
    bridge.clientOpened(client)
    bridge.clientClosed(1000, '')
    timers.advance(999)
    assert.equal(upstream.terminated, false)
    timers.advance(1)
    assert.equal(upstream.terminated, true)
    assert.equal(finished(), 1)
    assert.equal(timers.pending, 0)
  })

  it('tells the session exactly once, however many closes come', () => {
    const { bridge, client, closes } = bridged()
    bridge.clientOpened(client)
    bridge.close(1001, 'server shutting down')
    bridge.close(1001, 'again')
    bridge.clientClosed(1001, 'server shutting down')
    bridge.upstreamClosed(1000, '')
    bridge.fromClient('x'.repeat(5000))
    assert.equal(closes.length, 1)
    assert.deepEqual([closes[0]!.code, closes[0]!.by], [1001, 'gateway'])
  })
})

describe('the WebSocket bridge enforces max_message', () => {
  it('lets a message of exactly the limit through, and closes both sides with 1009 for a larger one from the client', () => {
    const { bridge, client, upstream, closes } = bridged({ maxMessageBytes: 4 })
    bridge.clientOpened(client)
    bridge.fromClient('abcd')
    bridge.fromClient('ab€') // 2 + 3 bytes
    assert.deepEqual(upstream.sent, ['abcd'])
    assert.deepEqual(client.closes, [{ code: 1009, reason: 'message too big' }])
    assert.deepEqual(upstream.closes, [{ code: 1009, reason: 'message too big' }])
    assert.deepEqual([closes[0]!.code, closes[0]!.by, closes[0]!.messagesIn, closes[0]!.bytesIn], [1009, 'gateway', 1, 4])
  })

  it('closes both sides with 1009 for a message too large from the upstream, also before the client opened', () => {
    const { bridge, client, upstream } = bridged({ maxMessageBytes: 4 })
    bridge.fromUpstream(new ArrayBuffer(5))
    assert.deepEqual(upstream.closes, [{ code: 1009, reason: 'message too big' }])
    bridge.clientOpened(client)
    assert.deepEqual(client.sent, [])
    assert.deepEqual(client.closes, [{ code: 1009, reason: 'message too big' }])
  })
})

describe('the WebSocket bridge closes an idle connection', () => {
  it('closes both sides with 1001 after the idle timeout without traffic', () => {
    const { bridge, client, upstream, timers, closes } = bridged({ idleTimeoutMs: 1000 })
    bridge.clientOpened(client)
    timers.advance(999)
    assert.equal(closes.length, 0)
    timers.advance(1)
    assert.deepEqual(client.closes, [{ code: 1001, reason: 'idle timeout' }])
    assert.deepEqual(upstream.closes, [{ code: 1001, reason: 'idle timeout' }])
    assert.deepEqual([closes[0]!.code, closes[0]!.by], [1001, 'gateway'])
  })

  it('counts messages, pings and pongs either way as traffic', () => {
    const { bridge, client, timers, closes } = bridged({ idleTimeoutMs: 1000 })
    bridge.clientOpened(client)
    timers.advance(600)
    bridge.fromUpstream('tick')
    timers.advance(600)
    bridge.clientPing(bytes())
    timers.advance(600)
    bridge.pong()
    timers.advance(600)
    bridge.fromClient('tock')
    timers.advance(999)
    assert.equal(closes.length, 0)
    timers.advance(1)
    assert.equal(closes.length, 1)
    assert.equal(timers.time, 3400)
  })

  it('keeps no timer when the idle timeout is 0', () => {
    const { bridge, client, timers, closes } = bridged({ idleTimeoutMs: 0 })
    bridge.clientOpened(client)
    assert.equal(timers.pending, 0)
    timers.advance(10_000_000)
    assert.equal(closes.length, 0)
  })

  it('stops the idle timer when the bridge ends', () => {
    const { bridge, client, upstream, timers } = bridged({ idleTimeoutMs: 1000 })
    bridge.clientOpened(client)
    bridge.clientClosed(1000, '')
    bridge.upstreamClosed(1000, '')
    assert.equal(timers.pending, 0)
    assert.deepEqual(upstream.closes, [{ code: 1000, reason: '' }])
  })
})

describe('the WebSocket bridge passes pings on where the runtime shows them', () => {
  it('sends a ping from either side to the other, and no pong', () => {
    const { bridge, client, upstream } = bridged()
    bridge.clientOpened(client)
    bridge.clientPing(bytes(1))
    bridge.upstreamPing(bytes(2))
    bridge.pong()
    assert.deepEqual(upstream.pings, [bytes(1)])
    assert.deepEqual(client.pings, [bytes(2)])
    assert.deepEqual([client.sent, upstream.sent], [[], []])
  })

  it('does without when the runtime has no ping (Deno)', () => {
    const { bridge, client } = bridged({}, {}, FakeSocket)
    bridge.clientOpened(client)
    bridge.clientPing(bytes(1))
    bridge.upstreamPing(bytes(2))
  })
})

describe('the WebSocket bridge keeps a slow reader from filling memory', () => {
  const options = { highWaterBytes: 100, bufferLimitBytes: 1000 }

  it('pauses the sender while the other side holds more than the high-water mark, and resumes it at half', () => {
    const { bridge, client, upstream, timers } = bridged({}, options)
    bridge.clientOpened(client)
    client.buffered = 150
    bridge.fromUpstream('x')
    assert.equal(upstream.paused, true)
    client.buffered = 60
    timers.advance(20)
    assert.equal(upstream.paused, true)
    client.buffered = 50
    timers.advance(20)
    assert.equal(upstream.paused, false)
    assert.equal(timers.pending, 0)
  })

  it('resumes at once when the runtime says the buffer drained', () => {
    const { bridge, client, upstream } = bridged({}, options)
    bridge.clientOpened(client)
    upstream.buffered = 500
    bridge.fromClient('x')
    assert.equal(client.paused, true)
    upstream.buffered = 0
    bridge.drained()
    assert.equal(client.paused, false)
  })

  it('pauses the upstream while messages wait for the client to open, and resumes it once they are sent', () => {
    const { bridge, client, upstream } = bridged({ maxMessageBytes: 1000 }, options)
    bridge.fromUpstream('y'.repeat(101))
    assert.equal(upstream.paused, true)
    bridge.clientOpened(client)
    assert.equal(upstream.paused, false)
  })

  it('closes both sides with 1013 past the bound when the sender cannot pause (Deno)', () => {
    const { bridge, client, upstream, closes } = bridged({}, options, FakeSocket)
    bridge.clientOpened(client)
    client.buffered = 500
    bridge.fromUpstream('x')
    assert.equal(closes.length, 0)
    client.buffered = 1001
    bridge.fromUpstream('x')
    assert.deepEqual(client.closes, [{ code: 1013, reason: 'client reads too slowly' }])
    assert.deepEqual(upstream.closes, [{ code: 1013, reason: 'client reads too slowly' }])
    assert.deepEqual([closes[0]!.code, closes[0]!.by], [1013, 'gateway'])
  })

  it('resumes a paused side when the bridge ends, so it can read the close answer', () => {
    const { bridge, client, upstream } = bridged({}, options)
    bridge.clientOpened(client)
    upstream.buffered = 500
    bridge.fromClient('x')
    assert.equal(client.paused, true)
    bridge.upstreamClosed(1000, '')
    assert.equal(client.paused, false)
  })

  it('bounds by default at the largest message plus 16 MiB', () => {
    const { bridge, client, closes } = bridged({ maxMessageBytes: 1024 }, {}, FakeSocket)
    bridge.clientOpened(client)
    client.buffered = 1024 + 16 * 1024 * 1024
    bridge.fromUpstream('x')
    assert.equal(closes.length, 0)
    client.buffered++
    bridge.fromUpstream('x')
    assert.equal(closes[0]!.code, 1013)
  })
})

describe('the live bridges of a server', () => {
  /** An upstream side as a connector makes it, whose events before attach are replayed. */
  function connectedUpstream() {
    const socket = new FullSocket()
    let events: UpstreamEvents | undefined
    const early: string[] = ['hello']
    return {
      socket,
      upstream: {
        protocol: '',
        headers: new Headers(),
        abandon() {},
        socket,
        attach(to: UpstreamEvents) {
          events = to
          for (const message of early) to.fromUpstream(message)
        },
      },
      closedByPeer: (code: number) => events!.upstreamClosed(code, ''),
    }
  }

  it('replays the upstream’s early events into the bridge it opens', () => {
    const live = new LiveBridges({ timers: new FakeTimers() })
    const { upstream } = connectedUpstream()
    const { session } = fakeSession()
    const bridge = live.open({ ...session, upstream })
    const client = new FullSocket()
    bridge.clientOpened(client)
    assert.deepEqual(client.sent, ['hello'])
    assert.equal(live.size, 1)
  })

  it('closes every bridge with 1001 both ways and resolves once each has finished', async () => {
    const timers = new FakeTimers()
    const live = new LiveBridges({ timers })
    const a = connectedUpstream()
    const b = connectedUpstream()
    const sa = fakeSession()
    const sb = fakeSession()
    const bridgeA = live.open({ ...sa.session, upstream: a.upstream })
    const bridgeB = live.open({ ...sb.session, upstream: b.upstream })
    const clientA = new FullSocket()
    bridgeA.clientOpened(clientA)
    bridgeB.clientOpened(new FullSocket())
    let done = false
    const closing = live.closeAll().then(() => (done = true))
    assert.deepEqual(clientA.closes, [{ code: 1001, reason: 'server shutting down' }])
    assert.deepEqual(a.socket.closes, [{ code: 1001, reason: 'server shutting down' }])
    bridgeA.clientClosed(1001, '')
    a.closedByPeer(1001)
    await Promise.resolve()
    assert.equal(done, false)
    timers.advance(1000) // b's sides never answer: dropped
    await closing
    assert.equal(b.socket.terminated, true)
    assert.equal(live.size, 0)
    assert.deepEqual([sa.closes.length, sb.closes.length], [1, 1])
    // A handshake that completes while the server closes is closed as soon as it is bridged.
    const c = connectedUpstream()
    const late = live.open({ ...fakeSession().session, upstream: c.upstream })
    assert.equal(late.ended, true)
    assert.deepEqual(c.socket.closes, [{ code: 1001, reason: 'server shutting down' }])
  })

  it('refuses a session whose upstream another runtime opened', () => {
    const live = new LiveBridges()
    assert.throws(() => live.open(fakeSession().session), TypeError)
  })
})

describe('WebSocket helpers', () => {
  it('counts UTF-8 bytes as TextEncoder does', () => {
    for (const text of ['', 'ascii', 'héllo', '€', '☃ snow', '😀', 'a😀b€c', 'x'.repeat(1000) + '\u07ff\u0800\uffff']) {
      assert.equal(messageBytes(text), new TextEncoder().encode(text).byteLength, text)
    }
    assert.equal(messageBytes(new ArrayBuffer(7)), 7)
    assert.equal(messageBytes(new Uint8Array(new ArrayBuffer(16), 4, 3)), 3)
  })

  it('knows which close codes may be sent, and which a WebSocket client API takes', () => {
    assert.deepEqual([1000, 1001, 1009, 1011, 1013, 1014, 3000, 4999].map(sendableCloseCode), Array(8).fill(true))
    assert.deepEqual([999, 1004, 1005, 1006, 1015, 2000, 5000].map(sendableCloseCode), Array(7).fill(false))
    assert.deepEqual([1000, 1001, 1009, 3000, 4999].map(clientApiCloseCode), [1000, 1000, 1000, 3000, 4999])
  })
})
