import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { loadConfigText } from '../../../src/config/load.ts'
import { firstPollDelay, nextPollDelay, startPolling, type PollSchedule, type PollTimers } from '../../../src/control/poller.ts'
import { ControlSource } from '../../../src/control/source.ts'
import { ONE_ROUTE, rejection } from '../fakes/policy-text.ts'

const schedule: PollSchedule = { pollMs: 15_000, jitter: 0.2, backoffMaxMs: 120_000 }
const lowest = () => 0
const highest = () => 1 - Number.EPSILON

describe('poll schedule', () => {
  test('after an answer: one interval, spread by ±jitter/2 around it', () => {
    assert.equal(nextPollDelay(schedule, 0, () => 0.5), 15_000)
    assert.equal(nextPollDelay(schedule, 0, lowest), 13_500)
    assert.ok(Math.abs(nextPollDelay(schedule, 0, highest) - 16_500) < 1e-6)
  })

  test('the mean wait is the interval itself, so a fleet of N costs the source N / poll', () => {
    let seed = 42
    const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31)
    const waits = Array.from({ length: 100_000 }, () => nextPollDelay(schedule, 0, random))
    const mean = waits.reduce((sum, wait) => sum + wait, 0) / waits.length
    assert.ok(Math.abs(mean - 15_000) < 30, `mean ${mean}`)
    assert.ok(Math.min(...waits) >= 13_500 && Math.max(...waits) <= 16_500)
  })

  test('one failure waits one interval; from the second in a row the base doubles up to backoff_max, the wait drawn from [½, 1] of it', () => {
    const middle = () => 0.5
    assert.deepEqual(
      [1, 2, 3, 4, 5, 10, 1000].map((failures) => nextPollDelay(schedule, failures, middle)),
      [15_000, 22_500, 45_000, 90_000, 90_000, 90_000, 90_000],
    )
    // The lower end never under the interval; the upper end the base itself.
    assert.deepEqual([2, 3, 4, 5].map((failures) => nextPollDelay(schedule, failures, lowest)), [15_000, 30_000, 60_000, 60_000])
    assert.deepEqual([2, 3, 4, 5].map((failures) => Math.round(nextPollDelay(schedule, failures, highest))), [30_000, 60_000, 120_000, 120_000])
  })

  test('a backoff_max under the interval never polls faster than the interval', () => {
    assert.equal(nextPollDelay({ ...schedule, backoffMaxMs: 1_000 }, 5, () => 0.5), 15_000)
  })

  test('no jitter: the exact interval', () => {
    assert.equal(nextPollDelay({ ...schedule, jitter: 0 }, 0, highest), 15_000)
  })

  test('the first wait falls anywhere in one interval', () => {
    assert.equal(firstPollDelay(schedule, lowest), 0)
    assert.equal(firstPollDelay(schedule, () => 0.25), 3_750)
  })
})

/** Timers run by hand: the test moves the clock, nothing sleeps. */
function manualTimers() {
  const pending: Array<{ at: number; run: () => void; id: number }> = []
  let now = 0
  let ids = 0
  const timers: PollTimers = {
    setTimeout(run, ms) {
      const id = ++ids
      pending.push({ at: now + ms, run, id })
      return id
    },
    clearTimeout(handle) {
      const index = pending.findIndex((timer) => timer.id === handle)
      if (index >= 0) pending.splice(index, 1)
    },
  }
  return {
    timers,
    get now() {
      return now
    },
    pending,
    /** Runs the next timer, then lets the poll it started settle. */
    async fireNext(): Promise<number> {
      pending.sort((a, b) => a.at - b.at)
      const next = pending.shift()!
      now = next.at
      next.run()
      for (let i = 0; i < 5; i++) await Promise.resolve()
      return now
    },
  }
}

describe('startPolling', () => {
  test('polls on the schedule, backs off while the source fails, and returns to the interval when it answers', async () => {
    const clock = manualTimers()
    const answers = [true, false, false, false, true, true]
    const polledAt: number[] = []
    const stop = startPolling(
      { pollMs: 1_000, jitter: 0, backoffMaxMs: 5_000 },
      async () => {
        polledAt.push(clock.now)
        return answers.shift()!
      },
      clock.timers,
      () => 0.5,
    )
    for (let i = 0; i < 6; i++) await clock.fireNext()
    // First at half an interval; then 1 s; then 1, 1.5 and 3 s (¾ of 2 and 4) while failing; then 1 s again.
    assert.deepEqual(polledAt, [500, 1_500, 2_500, 4_000, 7_000, 8_000])
    stop()
    assert.equal(clock.pending.length, 0)
  })

  test('a poll that throws counts as a failure; stopping during a poll schedules nothing more', async () => {
    const clock = manualTimers()
    let release!: () => void
    const polls: number[] = []
    const stop = startPolling(
      { pollMs: 1_000, jitter: 0, backoffMaxMs: 60_000 },
      async () => {
        polls.push(clock.now)
        if (polls.length === 1) throw new Error('boom')
        await new Promise<void>((resolve) => (release = resolve))
        return true
      },
      clock.timers,
      () => 0,
    )
    await clock.fireNext()
    assert.equal(clock.pending[0]!.at, 1_000)
    await clock.fireNext()
    stop()
    release()
    for (let i = 0; i < 5; i++) await Promise.resolve()
    assert.equal(clock.pending.length, 0)
  })
})

describe('[control] jitter and backoff_max', () => {
  const control = (keys: string) => `${ONE_ROUTE}\n[control]\nsource = "https://config.internal/orders.toml"\n${keys}\n`

  test('defaults: ±20% jitter, backoff up to 2 minutes', () => {
    const config = loadConfigText(control(''), 'x.toml')
    assert.deepEqual({ ...config.control, cache: undefined }, { source: 'https://config.internal/orders.toml', pollMs: 15_000, jitter: 0.2, backoffMaxMs: 120_000, timeoutMs: 5_000, cache: undefined })
  })

  test('mistakes at their key path', () => {
    const problems = rejection(control('jitter = 1.5\nbackoff_max = "0s"\npoll = "0s"')).map((problem) => `${problem.path}: ${problem.message}`)
    assert.deepEqual(problems, [
      'control.poll: expected a duration above zero, like "200ms" or "10s", got "0s"',
      'control.jitter: expected a number from 0 to 1, like 0.5, got 1.5',
      'control.backoff_max: expected a duration above zero, like "200ms" or "10s", got "0s"',
    ])
  })
})

describe('ControlSource.answered: what the backoff counts as a failure', () => {
  const settings = { url: 'http://config.internal/orders.toml', timeoutMs: 1_000 }
  const answering = (...responses: Array<() => Response>) => {
    const seen: Array<string | null> = []
    const fetchImpl = (async (_url: string, init: RequestInit) => {
      seen.push(new Headers(init.headers).get('if-none-match'))
      return responses.shift()!()
    }) as typeof fetch
    return { source: new ControlSource(settings, fetchImpl), seen }
  }

  test('a 200 and then a 304 for the ETag it gave are answers; a 503 and a refused connection are not', async () => {
    const { source, seen } = answering(
      () => new Response('one', { headers: { etag: '"1"' } }),
      () => new Response(null, { status: 304 }),
      () => new Response('busy', { status: 503 }),
      () => {
        throw new TypeError('fetch failed')
      },
    )
    assert.equal(await source.read(), 'one')
    assert.equal(source.answered, true)
    assert.equal(await source.read(), 'one')
    assert.equal(source.answered, true)
    await assert.rejects(source.read(), /answered 503/)
    assert.equal(source.answered, false)
    await assert.rejects(source.read(), /fetch failed/)
    assert.equal(source.answered, false)
    assert.deepEqual(seen, [null, '"1"', '"1"', '"1"'])
  })
})
