import { systemTimers, type Timers } from '../core/timers.ts'
import {
  CLOSE_GOING_AWAY,
  CLOSE_MESSAGE_TOO_BIG,
  type UpstreamWebSocket,
  type WebSocketClose,
  type WebSocketCloser,
  type WebSocketSession,
} from '../core/websocket.ts'

/**
 * The message-level bridge between a client's WebSocket and the upstream's, for runtimes whose
 * server and client hand over whole messages (Bun, Deno). Web-standard only: each adapter wraps
 * its runtime's sockets in a RelaySocket and feeds the bridge their events.
 */

/** A whole message as the runtimes hand it over: text, or binary as an ArrayBuffer or a view of one. */
export type RelayMessage = string | ArrayBuffer | ArrayBufferView

/** One side of a bridge as the relay drives it. What a runtime cannot do is left out. */
export interface RelaySocket {
  send(message: RelayMessage): void
  /** Starts the close handshake; no code sends an empty close frame. A side maps codes its API refuses. */
  close(code?: number, reason?: string): void
  /** Bytes accepted by send and not yet written to the network. */
  bufferedAmount(): number
  /** Drops the connection when the peer does not answer a close in time (Bun; Deno has no way to). */
  terminate?(): void
  /** Stops and restarts reading from this side, so a slow reader on the other side slows the sender (Bun). */
  pause?(): void
  resume?(): void
  /** Sends a ping on (Bun; Deno exposes no ping frames). */
  ping?(data: Uint8Array): void
}

/** Close codes 1005 (none given), 1006 (gone) and 1015 (TLS) describe a close and may never be sent; nor may unassigned ones. */
export function sendableCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999)
}

/** What the WebSocket API's close() accepts from a client (Deno): 1000 and 3000–4999; anything else is sent as 1000. */
export function clientApiCloseCode(code: number): number {
  return code === 1000 || (code >= 3000 && code <= 4999) ? code : 1000
}

/** A message's payload size in bytes: text as UTF-8, without encoding it. */
export function messageBytes(message: RelayMessage): number {
  if (typeof message !== 'string') return message.byteLength
  const length = message.length
  let bytes = length
  for (let i = 0; i < length; i++) {
    const unit = message.charCodeAt(i)
    if (unit < 0x80) continue
    if (unit < 0x800) bytes += 1
    else if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < length) {
      // A surrogate pair is two units and four bytes. Text from a socket is valid UTF-8, so pairs are whole.
      bytes += 2
      i++
    } else bytes += 2
  }
  return bytes
}

/** The 1013 the gateway sends when a side reads so slowly that what waits for it passes the bound. */
export const CLOSE_TRY_AGAIN_LATER = 1013

export interface BridgeOptions {
  timers?: Timers
  /** Reading from a side that can pause stops while the other side holds more than this unsent. */
  highWaterBytes?: number
  /**
   * Unsent bytes toward a side beyond which the bridge closes both with 1013: what a side that cannot
   * pause its sender (Deno, or a message already under way) may make the gateway hold for a slow reader.
   */
  bufferLimitBytes?: number
  /** How long each side has to answer a close before it is dropped. */
  graceMs?: number
  /** Told once both sides are closed (or dropped after the grace period). */
  onFinished?(): void
}

export const HIGH_WATER_BYTES = 1024 * 1024
/** Above the largest message allowed, this much more may wait for a slow reader before 1013. */
export const BUFFER_SLACK_BYTES = 16 * 1024 * 1024
export const CLOSE_GRACE_MS = 1000
const DRAIN_POLL_MS = 20

type Side = 'client' | 'upstream'

/**
 * Relays messages both ways between the client and the upstream, and ends the pair as one: a close
 * from either side is sent on to the other (1005 and 1006 as an empty close frame), a message over
 * the session's limit closes both with 1009, silence longer than its idle timeout with 1001. Counts
 * messages and payload bytes each way and tells session.closed exactly once, when the first side
 * closes or the gateway closes both.
 *
 * The client side exists only once its upgrade completes (clientOpened): until then, what the
 * upstream sends waits, and a close the upstream sent meanwhile is passed on right after.
 */
export class WebSocketBridge {
  readonly #session: WebSocketSession
  readonly #upstream: RelaySocket
  #client: RelaySocket | undefined
  readonly #timers: Timers
  readonly #highWater: number
  readonly #bufferLimit: number
  readonly #graceMs: number
  readonly #onFinished: (() => void) | undefined

  /** Upstream messages that came before the client's side opened. */
  #early: RelayMessage[] = []
  #earlyBytes = 0
  /** The close to send the client once it opens, when the bridge ended before. */
  #closeOnOpen: { code: number | undefined; reason: string } | undefined

  #messagesIn = 0
  #bytesIn = 0
  #messagesOut = 0
  #bytesOut = 0

  #ended: WebSocketClose | undefined
  #clientDone = false
  #upstreamDone = false
  #finished = false
  #graceTimer: unknown

  #lastActive: number
  #idleTimer: unknown

  /** Sides whose reading is paused because the other holds too much unsent. */
  #paused = new Set<Side>()
  #drainTimer: unknown

  constructor(session: WebSocketSession, upstream: RelaySocket, options: BridgeOptions = {}) {
    this.#session = session
    this.#upstream = upstream
    this.#timers = options.timers ?? systemTimers
    this.#highWater = options.highWaterBytes ?? HIGH_WATER_BYTES
    this.#bufferLimit = options.bufferLimitBytes ?? session.maxMessageBytes + BUFFER_SLACK_BYTES
    this.#graceMs = options.graceMs ?? CLOSE_GRACE_MS
    this.#onFinished = options.onFinished
    this.#lastActive = this.#timers.now()
    if (session.idleTimeoutMs > 0) this.#armIdle(session.idleTimeoutMs)
  }

  /** Whether the bridge has ended (a side closed, or the gateway closed both). */
  get ended(): boolean {
    return this.#ended !== undefined
  }

  /** The client's upgrade completed: what waited is sent, and a close that came meanwhile after it. */
  clientOpened(client: RelaySocket): void {
    this.#client = client
    const early = this.#early
    this.#early = []
    this.#earlyBytes = 0
    const endedBefore = this.#ended
    for (const message of early) {
      // The flush itself may end the bridge (a reader too slow): nothing more goes out then.
      if (this.#ended !== endedBefore) break
      client.send(message)
      this.#afterSend('client')
    }
    if (this.#closeOnOpen !== undefined) {
      const { code, reason } = this.#closeOnOpen
      this.#closeOnOpen = undefined
      closeSide(client, code, reason)
    } else if (this.#ended === undefined && this.#paused.has('upstream')) this.#checkDrained()
  }

  fromClient(message: RelayMessage): void {
    if (this.#ended !== undefined) return
    this.#lastActive = this.#timers.now()
    const bytes = messageBytes(message)
    if (bytes > this.#session.maxMessageBytes) return this.close(CLOSE_MESSAGE_TOO_BIG, 'message too big')
    this.#deliver('upstream', message, bytes)
  }

  fromUpstream(message: RelayMessage): void {
    if (this.#ended !== undefined) return
    this.#lastActive = this.#timers.now()
    const bytes = messageBytes(message)
    if (bytes > this.#session.maxMessageBytes) return this.close(CLOSE_MESSAGE_TOO_BIG, 'message too big')
    if (this.#client !== undefined) return this.#deliver('client', message, bytes)
    // Counted as it is taken in, so a close that comes before the client opens reports it too.
    this.#early.push(message)
    this.#earlyBytes += bytes
    this.#messagesOut++
    this.#bytesOut += bytes
    this.#afterSend('client')
  }

  /** A ping from the client: the runtime has answered it; the upstream gets one too (its pong is dropped). */
  clientPing(data: Uint8Array): void {
    if (this.#ended !== undefined) return
    this.#lastActive = this.#timers.now()
    this.#upstream.ping?.(data)
  }

  upstreamPing(data: Uint8Array): void {
    if (this.#ended !== undefined) return
    this.#lastActive = this.#timers.now()
    this.#client?.ping?.(data)
  }

  /** A pong from either side: activity for the idle timer, not sent on (the runtime answered the ping). */
  pong(): void {
    if (this.#ended === undefined) this.#lastActive = this.#timers.now()
  }

  /** The client's close frame came (1005: without a code), or its connection went (1006; Deno says 0). */
  clientClosed(code: number, reason: string): void {
    this.#clientDone = true
    if (this.#ended === undefined) this.#end('client', code < 1000 ? 1006 : code, reason, 'upstream')
    else this.#maybeFinished()
  }

  upstreamClosed(code: number, reason: string): void {
    this.#upstreamDone = true
    if (this.#ended === undefined) this.#end('upstream', code < 1000 ? 1006 : code, reason, 'client')
    else this.#maybeFinished()
  }

  /** A side's send buffer emptied (Bun's drain): a paused sender may go on. */
  drained(): void {
    if (this.#paused.size > 0) this.#checkDrained()
  }

  /** The gateway closes both sides with this code: a message too big, idle, a slow reader, shutdown. */
  close(code: number, reason: string): void {
    if (this.#ended === undefined) this.#end('gateway', code, reason, 'both')
  }

  #deliver(to: Side, message: RelayMessage, bytes: number): void {
    if (to === 'upstream') {
      this.#upstream.send(message)
      this.#messagesIn++
      this.#bytesIn += bytes
    } else {
      this.#client!.send(message)
      this.#messagesOut++
      this.#bytesOut += bytes
    }
    this.#afterSend(to)
  }

  #buffered(side: Side): number {
    if (side === 'upstream') return this.#upstream.bufferedAmount()
    return this.#client === undefined ? this.#earlyBytes : this.#client.bufferedAmount()
  }

  /** Flow control after a send toward `to`: pause its sender while `to` reads slowly, or give up past the bound. */
  #afterSend(to: Side): void {
    if (this.#ended !== undefined) return
    const buffered = this.#buffered(to)
    if (buffered <= this.#highWater) return
    if (buffered > this.#bufferLimit) return this.close(CLOSE_TRY_AGAIN_LATER, `${to} reads too slowly`)
    const from: Side = to === 'client' ? 'upstream' : 'client'
    const sender = from === 'client' ? this.#client : this.#upstream
    if (sender?.pause === undefined || this.#paused.has(from)) return
    sender.pause()
    this.#paused.add(from)
    this.#drainTimer ??= this.#timers.setTimeout(() => this.#pollDrained(), DRAIN_POLL_MS)
  }

  #pollDrained(): void {
    this.#drainTimer = undefined
    this.#checkDrained()
    if (this.#paused.size > 0 && this.#ended === undefined) {
      this.#drainTimer = this.#timers.setTimeout(() => this.#pollDrained(), DRAIN_POLL_MS)
    }
  }

  /** Resumes each paused sender whose reader has caught up to half the high-water mark. */
  #checkDrained(): void {
    for (const from of [...this.#paused]) {
      const to: Side = from === 'client' ? 'upstream' : 'client'
      // The client's side may not be open yet: its waiting messages count as unsent.
      if (to === 'client' && this.#client === undefined) continue
      if (this.#buffered(to) > this.#highWater / 2) continue
      this.#paused.delete(from)
      ;(from === 'client' ? this.#client : this.#upstream)?.resume?.()
    }
  }

  #resumeAll(): void {
    for (const from of this.#paused) (from === 'client' ? this.#client : this.#upstream)?.resume?.()
    this.#paused.clear()
    if (this.#drainTimer !== undefined) this.#timers.clearTimeout(this.#drainTimer)
    this.#drainTimer = undefined
  }

  #armIdle(ms: number): void {
    this.#idleTimer = this.#timers.setTimeout(() => this.#idleCheck(), ms)
  }

  /** One timer re-armed for the rest of the quiet period, rather than reset on every message. */
  #idleCheck(): void {
    this.#idleTimer = undefined
    if (this.#ended !== undefined) return
    const quiet = this.#timers.now() - this.#lastActive
    const idle = this.#session.idleTimeoutMs
    if (quiet >= idle) this.close(CLOSE_GOING_AWAY, 'idle timeout')
    else this.#armIdle(idle - quiet)
  }

  /**
   * Ends the bridge: the other side (or both, when the gateway decides) gets the close, each side has
   * the grace period to finish its handshake, and the session hears how it ended. A code that may not
   * be sent (1005, 1006) goes on as an empty close frame.
   */
  #end(by: WebSocketCloser, code: number, reason: string, notify: Side | 'both'): void {
    const close: WebSocketClose = {
      code,
      reason,
      by,
      messagesIn: this.#messagesIn,
      bytesIn: this.#bytesIn,
      messagesOut: this.#messagesOut,
      bytesOut: this.#bytesOut,
    }
    this.#ended = close
    if (this.#idleTimer !== undefined) this.#timers.clearTimeout(this.#idleTimer)
    this.#idleTimer = undefined
    // A paused side could not read the answer to its close.
    this.#resumeAll()
    const sendCode = sendableCloseCode(code) ? code : undefined
    const sendReason = sendCode === undefined ? '' : reason
    if (notify !== 'client' && !this.#upstreamDone) closeSide(this.#upstream, sendCode, sendReason)
    if (notify !== 'upstream' && !this.#clientDone) {
      if (this.#client === undefined) this.#closeOnOpen = { code: sendCode, reason: sendReason }
      else closeSide(this.#client, sendCode, sendReason)
    }
    if (!this.#maybeFinished()) this.#graceTimer = this.#timers.setTimeout(() => this.#dropStragglers(), this.#graceMs)
    this.#session.closed(close)
  }

  #dropStragglers(): void {
    this.#graceTimer = undefined
    if (!this.#upstreamDone) this.#upstream.terminate?.()
    if (!this.#clientDone) this.#client?.terminate?.()
    this.#upstreamDone = true
    this.#clientDone = true
    this.#maybeFinished()
  }

  #maybeFinished(): boolean {
    if (this.#finished) return true
    if (!this.#clientDone || !this.#upstreamDone) return false
    this.#finished = true
    if (this.#graceTimer !== undefined) this.#timers.clearTimeout(this.#graceTimer)
    this.#graceTimer = undefined
    this.#early = []
    this.#onFinished?.()
    return true
  }
}

function closeSide(socket: RelaySocket, code: number | undefined, reason: string): void {
  try {
    socket.close(code, reason)
  } catch {
    // A reason over 123 bytes, or a socket already gone: close plainly, or leave it to the grace period.
    try {
      socket.close()
    } catch {}
  }
}

/** The events an upstream side feeds its bridge; a connector replays those that came before the bridge. */
export type UpstreamEvents = Pick<WebSocketBridge, 'fromUpstream' | 'upstreamPing' | 'pong' | 'upstreamClosed'>

/** An upstream side opened by this folder's connectors: what the bridge drives, and where its events go. */
export interface BridgeableUpstream extends UpstreamWebSocket {
  readonly socket: RelaySocket
  /** From now on its events go to these; those that came before are replayed first. */
  attach(events: UpstreamEvents): void
}

function isBridgeable(upstream: UpstreamWebSocket): upstream is BridgeableUpstream {
  return typeof (upstream as Partial<BridgeableUpstream>).attach === 'function'
}

/**
 * The bridges a server carries, so closing it can close them first: a runtime's server does not
 * finish stopping while WebSockets are open (Bun), or drops them without a close frame (Deno).
 */
export class LiveBridges {
  readonly #live = new Set<WebSocketBridge>()
  readonly #finished = new Map<WebSocketBridge, () => void>()
  readonly #options: Omit<BridgeOptions, 'onFinished'>
  #closing = false

  constructor(options: Omit<BridgeOptions, 'onFinished'> = {}) {
    this.#options = options
  }

  get size(): number {
    return this.#live.size
  }

  /** A bridge for an accepted session, its upstream's events routed to it; closed at once if the server is closing. */
  open(session: WebSocketSession): WebSocketBridge {
    const upstream = session.upstream
    if (!isBridgeable(upstream)) throw new TypeError('the session’s upstream WebSocket was not opened by this runtime')
    const bridge: WebSocketBridge = new WebSocketBridge(session, upstream.socket, {
      ...this.#options,
      onFinished: () => {
        this.#live.delete(bridge)
        this.#finished.get(bridge)?.()
        this.#finished.delete(bridge)
      },
    })
    this.#live.add(bridge)
    upstream.attach(bridge)
    if (this.#closing) bridge.close(CLOSE_GOING_AWAY, 'server shutting down')
    return bridge
  }

  /** Resolves once every bridge open now has finished, however it ends. */
  async finished(): Promise<void> {
    await Promise.all([...this.#live].map((bridge) => new Promise<void>((resolve) => this.#whenFinished(bridge, resolve))))
  }

  #whenFinished(bridge: WebSocketBridge, resolve: () => void): void {
    const earlier = this.#finished.get(bridge)
    this.#finished.set(bridge, earlier === undefined ? resolve : () => (earlier(), resolve()))
  }

  /** Closes every bridge with 1001 both ways; resolves once each has finished (a side that does not answer is dropped after the grace period). */
  async closeAll(): Promise<void> {
    this.#closing = true
    const waits: Promise<void>[] = []
    for (const bridge of this.#live) {
      waits.push(new Promise<void>((resolve) => this.#whenFinished(bridge, resolve)))
      bridge.close(CLOSE_GOING_AWAY, 'server shutting down')
    }
    await Promise.all(waits)
  }
}
