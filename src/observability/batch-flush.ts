/** How a batcher waits; replaceable so tests fire flushes themselves. */
export interface FlushTimers {
  setTimer?: (run: () => void, ms: number) => unknown
  clearTimer?: (handle: unknown) => void
}

/** What the batcher holds, as its BatchFlush asks. */
export interface BatchState {
  /** Anything is waiting to be sent. */
  pending(): boolean
  /** A full batch is waiting: it goes without waiting for the timer. */
  full(): boolean
}

/**
 * When a batch goes out, for the access log's LineWriter and the OTLP exporter: once a full batch
 * is waiting, else `flushMs` after the first item, one send at a time. Items that arrive during a
 * send wait for the next full batch or the timer, as Envoy's access log does (64 KiB or 1 s): a
 * fast sink then gets few large writes, not one small write after another as each one completes.
 */
export class BatchFlush {
  readonly #send: () => Promise<void>
  readonly #state: BatchState
  readonly #flushMs: number
  readonly #timers: FlushTimers
  #timer: unknown
  #running: Promise<void> | undefined
  /** flush() calls waiting: sends go on until nothing is left. */
  #everything = 0

  /** `send` takes what is waiting (up to a batch) and sends it; it is called only when something waits, and never throws. */
  constructor(send: () => Promise<void>, state: BatchState, flushMs: number, timers: FlushTimers) {
    this.#send = send
    this.#state = state
    this.#flushMs = flushMs
    this.#timers = timers
  }

  /** The batcher took an item: sends now when a batch is full, else makes sure one is due within flushMs. */
  added(): void {
    if (this.#running !== undefined) return
    if (this.#state.full()) void this.now()
    else this.#soon()
  }

  /** Sends what is waiting now (or joins the send in progress), then more while full batches wait. */
  now(): Promise<void> {
    if (this.#timer !== undefined) {
      ;(this.#timers.clearTimer ?? ((handle) => clearTimeout(handle as ReturnType<typeof setTimeout>)))(this.#timer)
      this.#timer = undefined
    }
    // Nothing waiting, nothing in flight: nothing to send (a flush at shutdown, a reload).
    if (this.#running === undefined && !this.#state.pending()) return Promise.resolve()
    this.#running ??= this.#run()
    return this.#running
  }

  /** Sends everything waiting, however little; resolves once nothing is left (for shutdown and reloads). */
  async flush(): Promise<void> {
    this.#everything++
    try {
      do await this.now()
      while (this.#state.pending())
    } finally {
      this.#everything--
    }
  }

  async #run(): Promise<void> {
    try {
      do await this.#send()
      while (this.#state.pending() && (this.#everything > 0 || this.#state.full()))
    } finally {
      this.#running = undefined
    }
    if (this.#state.pending()) this.#soon()
  }

  #soon(): void {
    if (this.#running !== undefined || this.#timer !== undefined) return
    const set = this.#timers.setTimer ?? ((run, ms) => setTimeout(run, ms))
    this.#timer = set(() => {
      this.#timer = undefined
      void this.now()
    }, this.#flushMs)
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
