import * as v from 'valibot'
import { expectedGot } from '../../core/config-error.ts'
import { duration, parseDuration } from '../../core/units.ts'

/**
 * Schema pieces the breaker and fallback share (candidates for config/schema-kit.ts).
 * A duration that may not be zero: a zero window, open period or stale age would mean nothing.
 * The check runs on the text, before it becomes milliseconds, so the message can quote it.
 */
export function positiveDuration() {
  return v.pipe(
    v.unknown(),
    v.check(
      (input) => typeof input !== 'string' || parseDuration(input) !== 0,
      (issue) => expectedGot('a duration above zero, like "200ms" or "10s"', issue.input),
    ),
    duration(),
  )
}
