import type { ClientInfo } from '../runtime/types.ts'

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
  /** Set when the response body is still streaming; its end will call finish(). */
  finishesWithBody = false
  #cleanups: Array<() => void> | undefined
  #finished = false

  constructor(request: Request, client: ClientInfo, requestId: string, path: string, search: string, startedAt: number) {
    this.request = request
    this.client = client
    this.requestId = requestId
    this.path = path
    this.search = search
    this.startedAt = startedAt
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
