import { systemTimers, type Timers } from '../core/timers.ts'

/**
 * When a sidecar asks the central source again. A fleet that polls on a fixed beat from the same
 * start (a rollout starts hundreds of sidecars at once) would hit the source in waves; after an
 * outage, sidecars retrying on that beat would all come back at once. So each wait is spread by
 * jitter, the first one over a whole interval, and failures back off exponentially up to a cap.
 */
export interface PollSchedule {
  pollMs: number
  /** Each wait is pollMs × (1 ± jitter / 2), drawn afresh: the mean stays pollMs, so a fleet's rate stays N / poll. */
  jitter: number
  /** The longest wait after failures: from the second in a row, the wait doubles per failure, up to this. */
  backoffMaxMs: number
}

/** Jitter by [-½, +½) of the spread, so the mean wait is exactly `ms`. */
function spread(ms: number, jitter: number, random: () => number): number {
  return ms * (1 + jitter * (random() - 0.5))
}

/** The first wait: anywhere in one interval, so sidecars started together poll apart from the start. */
export function firstPollDelay(schedule: PollSchedule, random: () => number = Math.random): number {
  return schedule.pollMs * random()
}

/**
 * The wait after a poll: about one interval after an answer, and after one failure too (a blip costs
 * nothing). From the second failure in a row the wait backs off: base = pollMs × 2^(failures − 1),
 * capped at backoffMaxMs, and the wait is drawn from [base / 2, base] ("equal jitter"), never under
 * pollMs. The wide spread matters when the source returns: sidecars that failed together come back
 * over half a backoff, not at once and not all at its end.
 */
export function nextPollDelay(schedule: PollSchedule, failures: number, random: () => number = Math.random): number {
  if (failures < 2) return spread(schedule.pollMs, schedule.jitter, random)
  const base = Math.min(schedule.backoffMaxMs, schedule.pollMs * 2 ** Math.min(failures - 1, 30))
  return Math.max(schedule.pollMs, base * (0.5 + 0.5 * random()))
}

/** What the poller needs of the clock: its timers (core/timers.ts, replaceable in tests). */
export type PollTimers = Pick<Timers, 'setTimeout' | 'clearTimeout'>

/**
 * Polls on the schedule until stopped: `poll` resolves true when the source answered (a 200 or a
 * 304, whether or not the policy it gave was valid) and false when it did not. One poll at a time:
 * the next wait starts when a poll has finished.
 */
export function startPolling(schedule: PollSchedule, poll: () => Promise<boolean>, timers: PollTimers = systemTimers, random: () => number = Math.random): () => void {
  let stopped = false
  let failures = 0
  let timer: unknown
  const run = async () => {
    const answered = await poll().catch(() => false)
    if (stopped) return
    failures = answered ? 0 : failures + 1
    timer = timers.setTimeout(() => void run(), nextPollDelay(schedule, failures, random))
  }
  timer = timers.setTimeout(() => void run(), firstPollDelay(schedule, random))
  return () => {
    stopped = true
    timers.clearTimeout(timer)
  }
}
