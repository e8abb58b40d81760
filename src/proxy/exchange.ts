import { GatewayError } from '../core/errors.ts'
import type { ClientInfo } from '../core/host.ts'
import type { WebSocketSession, WebSocketTerms } from '../core/websocket.ts'
import type { Endpoint } from '../upstream/balancer.ts'
import type { UpstreamRuntime } from '../upstream/upstream.ts'
import { Cancel, type Abortable } from '../core/cancel.ts'

export type RequestBody = ReadableStream<Uint8Array> | Uint8Array | null

/** One request's journey through a route's chain: what every layer reads, and how it is cancelled. */
export class Exchange {
  readonly request: Request
  readonly client: ClientInfo
  readonly requestId: string
  /** The matched route's name. */
  route = ''
  readonly path: string
  readonly search: string
  readonly startedAt: number
  /** Aborted with a GatewayError saying why: the client left, or a deadline passed. */
  readonly controller = new Cancel()
  /** The upstream this request goes to when a layer chose one (a weighted split); else the route's. */
  target: UpstreamRuntime | undefined
  /** Name of the upstream and URL of the endpoint the last try went to. */
  upstream: string | undefined
  endpoint: string | undefined
  /** Time from sending the last try to its response headers, ms. */
  upstreamMs: number | undefined
  /** Which fallback answered, or which fault was injected, for logs and metrics. */
  fallback: string | undefined
  fault: string | undefined
  /**
   * Which authorization refused the request, for logs: an authz rule's name, or "ext_authz"; also what
   * let a request through unchecked: "dry_run:RULE", "ext_authz:failed_open" (on_error = "allow").
   */
  authz: string | undefined
  /** The verified JWT payload, set by the jwt policy; rate limits and header rules read its claims. */
  claims: Record<string, unknown> | undefined
  /** The API-key consumer's name, set by the api_key policy once the key is valid; header rules read it. */
  consumer: string | undefined
  /** The request asks to become a WebSocket (set by the listener); the websocket policy decides. */
  upgrade = false
  /** What the route's websocket policy admitted this handshake with; the forwarder then opens a WebSocket upstream. */
  websocket: WebSocketTerms | undefined
  /** Set by the forwarder once the upstream accepted the WebSocket: the listener answers with the client's 101. */
  session: WebSocketSession | undefined
  /** The forwarder's answer when it read the body whole, and its size: nothing left to watch. */
  buffered: { response: Response; bytes: number } | undefined
  /** Changes to the headers sent upstream, applied in order after the proxy's own (see UpstreamHeaderEdit). */
  upstreamHeaderEdits: UpstreamHeaderEdit[] | undefined
  /** performance.now() by which the whole exchange must be done; Infinity when the route has no timeout. */
  deadline = Number.POSITIVE_INFINITY
  /** Set when a gRPC client's grpc-timeout set the deadline: each try tells the upstream the time left. */
  grpcDeadline = false
  /** Tries sent upstream so far. */
  attempts = 0
  /** The current try's signal; a per-try timeout aborts it without aborting the exchange. */
  attemptSignal: Abortable
  /** Endpoints already tried, so a retry can go elsewhere; undefined until a second try. */
  tried: Endpoint[] | undefined
  /** The request body as buffered for replay, when a retry layer buffered it. */
  replayableBody: Uint8Array | undefined
  /** The client's stream with its first bytes put back, after a look that found it too large to replay. */
  resumedBody: ReadableStream<Uint8Array> | undefined
  #cleanups: Array<() => void> | undefined
  #finished = false
  #unwatchClient: (() => void) | undefined
  /** The route timeout's timer, cleared when the exchange finishes (kept here, not in a closure). */
  deadlineTimer: ReturnType<typeof setTimeout> | undefined

  constructor(request: Request, client: ClientInfo, requestId: string, path: string, search: string, startedAt: number) {
    this.request = request
    this.client = client
    this.requestId = requestId
    this.path = path
    this.search = search
    this.startedAt = startedAt
    this.attemptSignal = this.controller
  }

  /** What to send upstream: the buffered copy when there is one, else the client's stream (once). */
  get body(): RequestBody {
    return this.replayableBody ?? this.resumedBody ?? (this.#bodiless ? null : this.request.body)
  }

  /**
   * A GET or HEAD without Content-Length or Transfer-Encoding has no body (RFC 9112 §6.3). Knowing it
   * from the headers spares @hono/node-server building a full undici Request just to answer null.
   * Decided once: several layers read `body`.
   */
  get #bodiless(): boolean {
    if (this.#knownBodiless === undefined) {
      const { method, headers } = this.request
      this.#knownBodiless = (method === 'GET' || method === 'HEAD') && !headers.has('content-length') && !headers.has('transfer-encoding')
    }
    return this.#knownBodiless
  }

  #knownBodiless: boolean | undefined

  /** Sets a header on what goes upstream (auth claims, trace context), overriding the client's. */
  setUpstreamHeader(name: string, value: string | null): void {
    ;(this.upstreamHeaderEdits ??= []).push([name, value])
  }

  /** The exchange's cancellation; its `signal` is a real AbortSignal, for an API that takes one. */
  get signal(): Cancel {
    return this.controller
  }

  /** Runs once the response body has been delivered, failed or been cancelled. */
  onFinish(cleanup: () => void): void {
    ;(this.#cleanups ??= []).push(cleanup)
  }

  /** Cancels the exchange when the client goes away, until it finishes: by the runtime's own watch, else the request's signal. */
  watchClient(request: Request, client: ClientInfo): void {
    if (client.watchGone !== undefined) {
      this.#unwatchClient = client.watchGone(this)
      return
    }
    request.signal.addEventListener('abort', this)
  }

  /**
   * The client went away: an EventListener object, so watching a client allocates no closure. The
   * listener stays on the request's signal after the exchange finishes (removing it costs Bun about
   * as much as adding it, and the signal goes with the request): a late abort is ignored here.
   */
  handleEvent(): void {
    if (this.#finished) return
    this.controller.abort(new GatewayError('client_closed', 'the client closed the connection'))
  }

  finish(): void {
    if (this.#finished) return
    this.#finished = true
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer)
    this.#unwatchClient?.()
    if (this.#cleanups) for (const cleanup of this.#cleanups) cleanup()
  }
}

/**
 * One change to the headers sent upstream: a value replaces the header, null removes it, and a value
 * marked 'append' is added beside the values it has. Edits are never changed once made, so a layer
 * may push the same constant edit on every request.
 */
export type UpstreamHeaderEdit = readonly [name: string, value: string | null, mode?: 'append']

/** Each layer wraps the next one; built once per route at config load. */
export type Step = (exchange: Exchange) => Promise<Response>
export type Layer = (next: Step) => Step
