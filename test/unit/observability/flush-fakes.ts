import type { Logger } from '../../../src/core/log.ts'

/** Flush timers the test fires by hand: for sinks that batch (access log, trace export). */
export function fakeTimers() {
  const pending = new Map<number, () => void>()
  let next = 0
  let waiters: Array<() => void> = []
  return {
    setTimer: (run: () => void) => {
      pending.set(++next, run)
      for (const wake of waiters) wake()
      waiters = []
      return next
    },
    /** Resolves when the next timer is set. */
    nextSet: () => new Promise<void>((resolve) => waiters.push(resolve)),
    clearTimer: (handle: unknown) => void pending.delete(handle as number),
    fire() {
      const runs = [...pending.values()]
      pending.clear()
      for (const run of runs) run()
    },
    get count() {
      return pending.size
    },
  }
}

/** A logger that keeps the messages it was given. */
export function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = []
  return { lines, log: (_level, msg) => void lines.push(msg) }
}
