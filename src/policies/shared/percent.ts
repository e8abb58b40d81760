import * as v from 'valibot'
import { expectedGot } from '../../core/config-error.ts'

/** A percentage of requests, 0 to 100; fractions allowed ("0.1" is one request in a thousand). */
export function percent() {
  const expected = 'a percentage from 0 to 100, like 10 or 0.5'
  return v.pipe(
    v.number((issue) => expectedGot(expected, issue.input)),
    v.check((n) => n >= 0 && n <= 100, (issue) => expectedGot(expected, issue.input)),
  )
}

/** Whether this request falls within `percent`; 0 and 100 decide without a random draw. */
export function inPercent(percent: number, random: () => number): boolean {
  if (percent >= 100) return true
  return percent > 0 && random() * 100 < percent
}
