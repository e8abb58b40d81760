/** How a batcher waits; replaceable so tests fire flushes themselves. */
export interface FlushTimers {
  setTimer?: (run: () => void, ms: number) => unknown
  clearTimer?: (handle: unknown) => void
}

/**
 * When a batch goes out, for the access log's LineWriter and the OTLP exporter: after `flushMs`, or at
 * once when asked, and one drain at a time, so items that arrive meanwhile gather for the next.
 */
export class BatchFlush {
  readonly #drain: () => Promise<void>
  readonly #flushMs: number
  readonly #timers: FlushTimers
  #timer: unknown
  #running: Promise<void> | undefined

  constructor(drain: () => Promise<void>, flushMs: number, timers: FlushTimers) {
    this.#drain = drain
    this.#flushMs = flushMs
    this.#timers = timers
  }

  /** A drain is in progress: it will take what was just added. */
  get running(): boolean {
    return this.#running !== undefined
  }

  /** Makes sure a flush is due within flushMs. */
  soon(): void {
    if (this.#running !== undefined || this.#timer !== undefined) return
    const set = this.#timers.setTimer ?? ((run, ms) => setTimeout(run, ms))
    this.#timer = set(() => {
      this.#timer = undefined
      void this.now()
    }, this.#flushMs)
  }

  /** Drains now (or joins the drain in progress); resolves when it is done. */
  now(): Promise<void> {
    if (this.#timer !== undefined) {
      ;(this.#timers.clearTimer ?? ((handle) => clearTimeout(handle as ReturnType<typeof setTimeout>)))(this.#timer)
      this.#timer = undefined
    }
    this.#running ??= this.#drain().finally(() => (this.#running = undefined))
    return this.#running
  }
}

/** Logs a failure once per distinct reason, so a sink that stays down costs no log volume. */
export class FailureNote {
  #last: string | undefined

  /** The reason when it differs from the last one noted, else undefined; a success resets it. */
  changed(error: unknown): string | undefined {
    const reason = (error as Error)?.message ?? String(error)
    if (reason === this.#last) return undefined
    this.#last = reason
    return reason
  }

  cleared(): void {
    this.#last = undefined
  }
}
