/**
 * Counts events per key and hands on a report at most once per intervalMs for each key, with the
 * count since the last one: a log that shows a dry run's or a failing service's events without one
 * line per request.
 *
 * @example const tally = logTally(1000, performance.now); const count = tally('orders\u0000write'); if (count) log(count)
 */
export function logTally(intervalMs: number, now: () => number): (key: string) => number | undefined {
  const tallies = new Map<string, { reportedAt: number; count: number }>()
  return (key) => {
    let tally = tallies.get(key)
    if (tally === undefined) tallies.set(key, (tally = { reportedAt: Number.NEGATIVE_INFINITY, count: 0 }))
    tally.count++
    const at = now()
    if (at - tally.reportedAt < intervalMs) return undefined
    tally.reportedAt = at
    const count = tally.count
    tally.count = 0
    return count
  }
}
