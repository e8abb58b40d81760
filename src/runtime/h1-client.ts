import { GatewayError } from '../core/errors.ts'
import { UpstreamError } from '../core/upstream-error.ts'
import type { UpstreamAnswer, UpstreamClient, UpstreamRequest, UpstreamTls } from '../core/host.ts'
import { oncePerUpstreamTls } from './upstream-tls.ts'
import { upstreamTarget, type UpstreamTarget } from './upstream-url.ts'
import { ChunkedDecoder, chunkFrame, headEnd, LAST_CHUNK, parseHead, ProtocolError, requestHead, type AnswerHead } from './h1-wire.ts'

/**
 * Pillion's own HTTP/1.1 upstream client, for runtimes whose fetch cannot bound a connect (Bun, Deno):
 * connections are dialled on the runtime's TCP sockets within connect_timeout (TLS handshake
 * included, as undici counts it), kept alive in a pool per origin and TLS setting, and bodies stream
 * both ways with backpressure. It does what the core expects of an UpstreamClient (host.ts) and no
 * more: no redirects, no decoding.
 */

/** One open connection as the runtime gives it: bytes out (resolving once the runtime took them), flow control, teardown. */
export interface Wire {
  write(bytes: Uint8Array): Promise<void> | void
  pause(): void
  resume(): void
  destroy(): void
}

/** What a wire reports to its connection. */
export interface WireEvents {
  data(chunk: Uint8Array): void
  closed(error?: unknown): void
}

export interface DialTarget {
  host: string
  port: number
  /** Set for https: the TLS setting (its files read by the dialer), or {} for the system's trust. */
  tls?: UpstreamTls
}

/** Connects within the deadline or rejects with an UpstreamError ('connect-timeout' or 'connect-failure'). */
export type Dial = (target: DialTarget, events: WireEvents, deadlineMs: number) => Promise<Wire>

/**
 * An idle connection is closed after IDLE_MS to IDLE_MS + SWEEP_MS: never later than 4 s, below
 * Node's 5 s keepAliveTimeout, as undici's 4 s is. One sweep for every pool rather than a timer set
 * and cleared on every request (undici's coarse timers do the same).
 */
const IDLE_MS = 3_000
const SWEEP_MS = 1_000
/** A request body up to this size goes out in the same write as its head. */
const JOIN_BODY_BYTES = 16 * 1024

const NO_TLS: UpstreamTls = {}

/** Idle connections of one origin with one TLS setting, newest last. */
type Idle = Connection[]

/** How the idle sweep keeps time; replaceable so tests run it themselves. */
export interface IdleClock {
  now(): number
  every(run: () => void, ms: number): unknown
  stop(handle: unknown): void
}

const systemClock: IdleClock = {
  now: () => performance.now(),
  every: (run, ms) => setInterval(run, ms),
  stop: (handle) => clearInterval(handle as ReturnType<typeof setInterval>),
}

/** Closes the connections of its pools that have been idle IDLE_MS, every SWEEP_MS while any are idle. */
class IdleSweep {
  readonly clock: IdleClock
  readonly #pools = new Set<Idle>()
  #timer: unknown

  constructor(clock: IdleClock) {
    this.clock = clock
  }

  parked(idle: Idle): void {
    this.#pools.add(idle)
    this.#timer ??= this.clock.every(() => this.#sweep(), SWEEP_MS)
  }

  #sweep(): void {
    const oldest = this.clock.now() - IDLE_MS
    let left = 0
    for (const idle of this.#pools) {
      // Oldest first: the pool hands out its newest, so the long idle gather at the front.
      while (idle.length > 0 && idle[0]!.parkedAt <= oldest) {
        const connection = idle[0]!
        connection.destroy()
        if (idle[0] === connection) idle.shift()
      }
      if (idle.length === 0) this.#pools.delete(idle)
      left += idle.length
    }
    if (left === 0) {
      this.clock.stop(this.#timer)
      this.#timer = undefined
    }
  }
}

class Connection implements WireEvents {
  wire: Wire | undefined
  call: Call | undefined
  dead = false
  reused = false
  parkedAt = 0
  #idle: Idle | undefined

  data(chunk: Uint8Array): void {
    if (this.call !== undefined) this.call.data(chunk)
    else this.destroy() // nothing was asked: an upstream that talks out of turn is not reused
  }

  closed(error?: unknown): void {
    if (this.dead) return
    this.dead = true
    this.#leaveIdle()
    this.call?.closed(error)
  }

  park(idle: Idle, sweep: IdleSweep): void {
    this.call = undefined
    // A streamed answer may have paused reading on its last chunk: the next answer must be read.
    this.wire?.resume()
    this.#idle = idle
    this.parkedAt = sweep.clock.now()
    idle.push(this)
    sweep.parked(idle)
  }

  unpark(): void {
    this.#idle = undefined
    this.reused = true
  }

  destroy(): void {
    if (this.dead) return
    this.dead = true
    this.#leaveIdle()
    this.wire?.destroy()
  }

  #leaveIdle(): void {
    const idle = this.#idle
    if (idle === undefined) return
    const at = idle.indexOf(this)
    if (at !== -1) idle.splice(at, 1)
    this.#idle = undefined
  }
}

class Call {
  readonly #request: UpstreamRequest
  readonly #method: string
  readonly #resolve: (answer: UpstreamAnswer) => void
  readonly #reject: (error: unknown) => void
  /** Where the connection goes back once the answer is read, if it can carry another request. */
  readonly #idle: Idle
  readonly #sweep: IdleSweep
  #connection: Connection | undefined
  #pending: Uint8Array | undefined
  #head: AnswerHead | undefined
  #remaining = 0
  #chunked: ChunkedDecoder | undefined
  #collected: Uint8Array<ArrayBuffer> | undefined
  #collectedAt = 0
  #stream: ReadableStreamDefaultController<Uint8Array> | undefined
  #bodySent = false
  #answered = false
  #settled = false
  #finished = false
  #anyByte = false

  constructor(request: UpstreamRequest, resolve: (answer: UpstreamAnswer) => void, reject: (error: unknown) => void, idle: Idle, sweep: IdleSweep) {
    this.#request = request
    this.#method = request.method
    this.#resolve = resolve
    this.#reject = reject
    this.#idle = idle
    this.#sweep = sweep
    request.signal.addEventListener('abort', this)
  }

  /** A reused connection that closed before saying anything: the request can go again on a new one. */
  get replayable(): boolean {
    return this.#connection?.reused === true && !this.#anyByte && !(this.#request.body instanceof ReadableStream)
  }

  handleEvent(): void {
    this.fail(this.#request.signal.reason)
  }

  start(connection: Connection, url: UpstreamTarget, retry: (error: UpstreamError) => void): void {
    this.#connection = connection
    connection.call = this
    this.#retry = retry
    void this.#send(url).catch((error) => {
      if (this.#answered || this.#finished) return
      if (!this.#settled && this.#request.body instanceof ReadableStream && !(error instanceof UpstreamError)) {
        return this.fail(new GatewayError('bad_request', CLIENT_BODY_FAILED, { detail: `${CLIENT_BODY_FAILED}: ${String((error as Error)?.message ?? error)}` }))
      }
      this.fail(error instanceof UpstreamError ? error : new UpstreamError('reset', String((error as Error)?.message ?? error)))
    })
  }

  #retry: ((error: UpstreamError) => void) | undefined

  async #send(url: UpstreamTarget): Promise<void> {
    const request = this.#request
    const wire = this.#connection!.wire!
    const body = request.body
    const { head, framing } = requestHead(this.#method, url.path, url.at.host, request.fields ?? request.headers, body)
    if (body instanceof Uint8Array && body.byteLength <= JOIN_BODY_BYTES) {
      const joined = new Uint8Array(head.byteLength + body.byteLength)
      joined.set(head)
      joined.set(body, head.byteLength)
      await wire.write(joined)
    } else {
      await wire.write(head)
      if (body instanceof Uint8Array) await wire.write(body)
      else if (body !== null) await this.#sendStream(body, wire, framing === 'chunked')
    }
    this.#bodySent = true
    if (this.#finished) this.#done()
  }

  async #sendStream(body: ReadableStream<Uint8Array>, wire: Wire, chunked: boolean): Promise<void> {
    const reader = body.getReader()
    try {
      for (;;) {
        // The answer came whole before the body went out: the rest is not wanted, the connection not reused.
        if (this.#finished || this.#connection!.dead) return void reader.cancel().catch(() => {})
        const { done, value } = await reader.read()
        if (done) break
        if (value.byteLength === 0) continue
        if (chunked) for (const part of chunkFrame(value)) await wire.write(part)
        else await wire.write(value)
      }
      if (chunked) await wire.write(LAST_CHUNK)
    } finally {
      reader.releaseLock()
    }
  }

  data(chunk: Uint8Array): void {
    this.#anyByte = true
    try {
      this.#take(chunk)
    } catch (error) {
      this.fail(error instanceof ProtocolError ? new UpstreamError('protocol-error', error.message) : error)
    }
  }

  #take(chunk: Uint8Array): void {
    if (this.#finished) return
    if (this.#head === undefined) {
      let bytes = chunk
      if (this.#pending !== undefined) {
        bytes = new Uint8Array(this.#pending.byteLength + chunk.byteLength)
        bytes.set(this.#pending)
        bytes.set(chunk, this.#pending.byteLength)
      }
      const end = headEnd(bytes, this.#pending === undefined ? 0 : this.#pending.byteLength - 3)
      if (end === -1) {
        this.#pending = bytes === chunk ? chunk.slice() : bytes
        return
      }
      this.#pending = undefined
      const head = parseHead(bytes.subarray(0, end), this.#method)
      const rest = bytes.subarray(end)
      if (head.status < 200) {
        // 101 was never asked for (WebSockets go their own way); 1xx informational answers are skipped.
        if (head.status === 101) throw new ProtocolError('the upstream switched protocols unasked')
        if (rest.byteLength > 0) this.#take(rest)
        return
      }
      if (head.status > 599) throw new ProtocolError(`upstream answered with status ${head.status}`)
      this.#begin(head)
      if (rest.byteLength > 0 && !this.#finished) this.#body(rest)
      return
    }
    this.#body(chunk)
  }

  #begin(head: AnswerHead): void {
    this.#head = head
    const answer: UpstreamAnswer = { status: head.status, statusText: head.statusText, headers: head.headers, body: null, endToEnd: true }
    const framing = head.framing
    const bufferUpTo = this.#request.bufferUpTo
    if (framing.kind === 'none' || (framing.kind === 'length' && framing.length === 0)) {
      this.#settle(answer)
      return this.#finish()
    }
    if (framing.kind === 'length') {
      this.#remaining = framing.length
      if (bufferUpTo !== undefined && framing.length <= bufferUpTo) {
        this.#collected = new Uint8Array(framing.length)
        return
      }
    } else if (framing.kind === 'chunked') this.#chunked = new ChunkedDecoder()
    const connection = this.#connection!
    answer.body = new ReadableStream<Uint8Array>({
      start: (stream) => {
        this.#stream = stream
      },
      pull: () => connection.wire?.resume(),
      cancel: () => {
        this.#finished = true
        this.#done()
        connection.destroy()
      },
    })
    this.#settle(answer)
  }

  #body(chunk: Uint8Array): void {
    const framing = this.#head!.framing
    if (framing.kind === 'length') {
      const take = Math.min(this.#remaining, chunk.byteLength)
      this.#out(take === chunk.byteLength ? chunk : chunk.subarray(0, take))
      this.#remaining -= take
      if (this.#remaining === 0) this.#finish()
    } else if (framing.kind === 'chunked') {
      if (this.#chunked!.push(chunk, (data) => this.#out(data)) !== -1) this.#finish()
    } else this.#out(chunk)
  }

  #out(data: Uint8Array): void {
    if (data.byteLength === 0) return
    if (this.#collected !== undefined) {
      this.#collected.set(data, this.#collectedAt)
      this.#collectedAt += data.byteLength
      return
    }
    const stream = this.#stream!
    // Bun and Deno may reuse a read buffer: what is queued for later must be a copy.
    stream.enqueue(data.slice())
    if ((stream.desiredSize ?? 0) <= 0) this.#connection!.wire?.pause()
  }

  #finish(): void {
    this.#finished = true
    if (this.#collected !== undefined) {
      const answer = { status: this.#head!.status, statusText: this.#head!.statusText, headers: this.#head!.headers, body: this.#collected, endToEnd: true }
      this.#settle(answer)
    } else this.#stream?.close()
    if (this.#bodySent) this.#done()
  }

  /** The answer is read and the request sent: the connection goes back to the pool, or away. */
  #done(): void {
    this.#request.signal.removeEventListener('abort', this)
    const connection = this.#connection!
    if (connection.call !== this) return
    connection.call = undefined
    const reusable = this.#head?.keepAlive === true && this.#bodySent && this.#finished
    if (reusable && !connection.dead) connection.park(this.#idle, this.#sweep)
    else connection.destroy()
  }

  closed(error?: unknown): void {
    if (this.#finished) return
    if (this.#head?.framing.kind === 'close' && error === undefined) {
      this.#finished = true
      this.#stream?.close()
      this.#request.signal.removeEventListener('abort', this)
      return
    }
    const cause = error === undefined ? '' : `: ${String((error as Error)?.message ?? error)}`
    const failure = new UpstreamError('reset', `the upstream closed the connection${this.#head === undefined ? ' before answering' : ' in the middle of the answer'}${cause}`)
    if (!this.#settled && this.replayable && this.#retry !== undefined) {
      this.#request.signal.removeEventListener('abort', this)
      this.#finished = true
      return this.#retry(failure)
    }
    this.fail(failure)
  }

  fail(reason: unknown): void {
    if (this.#finished && this.#settled) return
    this.#finished = true
    this.#request.signal.removeEventListener('abort', this)
    this.#connection?.destroy()
    if (!this.#settled) {
      this.#settled = true
      this.#reject(reason)
    } else this.#stream?.error(reason)
  }

  #settle(answer: UpstreamAnswer): void {
    this.#answered = true
    if (this.#settled) return
    this.#settled = true
    this.#resolve(answer)
  }
}

/** The client sent a body its runtime's parser refused midway: the client's fault, not the upstream's. */
const CLIENT_BODY_FAILED = 'the request body could not be read to its end (malformed or cut short)'

/**
 * An UpstreamClient on `dial`. `poolsFor` gives the pools of one TLS setting (rebuilt after its files
 * change, see upstream-tls.ts); plain http has its own.
 */
export function h1Client(dial: Dial, poolsFor: (tls: UpstreamTls) => Map<string, Idle>, clock: IdleClock = systemClock): UpstreamClient {
  const plain = new Map<string, Idle>()
  const sweep = new IdleSweep(clock)
  const idleOf = (origin: string, tls: UpstreamTls | undefined): Idle => {
    const pools = tls === undefined ? plain : poolsFor(tls)
    let idle = pools.get(origin)
    if (idle === undefined) {
      idle = []
      pools.set(origin, idle)
    }
    return idle
  }
  return (request) =>
    new Promise<UpstreamAnswer>((resolve, reject) => {
      if (request.signal.aborted) return reject(request.signal.reason)
      const url = upstreamTarget(request.url)
      const { at } = url
      const tls = at.https ? (request.tls ?? NO_TLS) : undefined
      const idle = idleOf(at.origin, request.tls)
      const attempt = (fresh: boolean) => {
        const call = new Call(request, resolve, reject, idle, sweep)
        let connection = fresh ? undefined : idle.pop()
        while (connection !== undefined && connection.dead) connection = idle.pop()
        if (connection !== undefined) {
          connection.unpark()
          return call.start(connection, url, () => attempt(true))
        }
        const opened = new Connection()
        const target: DialTarget = { host: at.hostname, port: at.port, ...(tls === undefined ? {} : { tls }) }
        dial(target, opened, request.connectTimeoutMs).then(
          (wire) => {
            opened.wire = wire
            if (request.signal.aborted || opened.dead) return void wire.destroy()
            call.start(opened, url, () => attempt(true))
          },
          (error) => call.fail(error),
        )
      }
      attempt(false)
    })
}

/** Pools for each TLS setting, rebuilt after its files change; the old ones' idle connections close. */
export function poolsPerUpstreamTls(): (tls: UpstreamTls) => Map<string, Idle> {
  return oncePerUpstreamTls(
    () => new Map<string, Idle>(),
    (old) => {
      for (const idle of old.values()) for (const connection of [...idle]) connection.destroy()
    },
  )
}
