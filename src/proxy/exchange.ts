import type { ClientInfo } from '../runtime/types.ts'
import type { Endpoint } from './balancer.ts'

export type RequestBody = ReadableStream<Uint8Array> | Uint8Array | null

/** One request's journey through a route's chain: what every layer reads, and how it is cancelled. */
export class Exchange {
  readonly request: Request
  readonly client: ClientInfo
  readonly requestId: string
  readonly path: string
  readonly search: string
  readonly startedAt: number
  /** Aborted with a GatewayError saying why: the client left, or a deadline passed. */
  readonly controller = new AbortController()
  endpoint: string | undefined
  /** performance.now() by which the whole exchange must be done; Infinity when the route has no timeout. */
  deadline = Number.POSITIVE_INFINITY
  /** Tries sent upstream so far. */
  attempts = 0
  /** The current try's signal; a per-try timeout aborts it without aborting the exchange. */
  attemptSignal: AbortSignal
  /** Endpoints already tried, so a retry can go elsewhere; undefined until a second try. */
  tried: Endpoint[] | undefined
  /** The request body as buffered for replay, when a retry layer buffered it. */
  replayableBody: Uint8Array | undefined
  /** The client's stream with its first bytes put back, after a look that found it too large to replay. */
  resumedBody: ReadableStream<Uint8Array> | undefined
  #cleanups: Array<() => void> | undefined
  #finished = false

  constructor(request: Request, client: ClientInfo, requestId: string, path: string, search: string, startedAt: number) {
    this.request = request
    this.client = client
    this.requestId = requestId
    this.path = path
    this.search = search
    this.startedAt = startedAt
    this.attemptSignal = this.controller.signal
  }

  /** What to send upstream: the buffered copy when there is one, else the client's stream (once). */
  get body(): RequestBody {
    return this.replayableBody ?? this.resumedBody ?? this.request.body
  }

  get signal(): AbortSignal {
    return this.controller.signal
  }

  /** Runs once the response body has been delivered, failed or been cancelled. */
  onFinish(cleanup: () => void): void {
    ;(this.#cleanups ??= []).push(cleanup)
  }

  finish(): void {
    if (this.#finished) return
    this.#finished = true
    if (this.#cleanups) for (const cleanup of this.#cleanups) cleanup()
  }
}

/** Each layer wraps the next one; built once per route at config load. */
export type Step = (exchange: Exchange) => Promise<Response>
export type Layer = (next: Step) => Step
