import * as v from 'valibot'
import { describeValue, expectedGot } from './config-error.ts'
import { DURATION_HINT, duration, parseDuration } from './units.ts'

/** Building blocks for policy-file schemas: every message says what was expected and what was found. */

const NAME = /^[a-z0-9][a-z0-9_-]*$/i

/** A table whose keys are all known: unknown keys and missing required keys are both reported. */
export function table<const Entries extends v.ObjectEntries>(entries: Entries) {
  const allowed = Object.keys(entries).join(', ')
  return v.strictObject(entries, (issue) => {
    if (issue.path?.at(-1)?.origin !== 'key') return expectedGot('a table', issue.input)
    if (issue.expected === 'never') return `unknown key ${describeValue(issue.input)} (allowed: ${allowed})`
    return 'required key missing'
  })
}

export function oneOf<const Options extends readonly string[]>(options: Options) {
  const expected = `one of ${options.map((option) => JSON.stringify(option)).join(', ')}`
  return v.picklist(options, (issue) => expectedGot(expected, issue.input))
}

export function text() {
  return v.pipe(
    v.string((issue) => expectedGot('a string', issue.input)),
    v.regex(/\S/, 'expected a non-empty string'),
  )
}

const NAME_RULE = 'a name of letters, digits, "_" and "-", starting with a letter or digit'

export function name() {
  return v.pipe(
    v.string((issue) => expectedGot('a string', issue.input)),
    v.regex(NAME, (issue) => expectedGot(NAME_RULE, issue.input)),
  )
}

/** Tables keyed by a name: [listeners.<name>], [upstreams.<name>]. */
export function namedTables<Item extends v.GenericSchema>(item: Item) {
  return v.record(name(), item, (issue) => expectedGot('a table', issue.input))
}

export function arrayOf<Item extends v.GenericSchema>(item: Item) {
  return v.array(item, (issue) => expectedGot('an array', issue.input))
}

const METHOD = /^[!#$%&'*+.^_`|~0-9a-z-]+$/i

/** HTTP methods, upper-cased: a route's `methods`, an authz rule's. */
export function httpMethods() {
  const method = v.pipe(
    v.string((issue) => expectedGot('an HTTP method like "GET"', issue.input)),
    v.regex(METHOD, (issue) => expectedGot('an HTTP method like "GET"', issue.input)),
    v.toUpperCase(),
  )
  return v.pipe(arrayOf(method), v.minLength(1, 'expected at least one method (leave the key out to match any)'))
}

/** A whole number in [min, max]. */
export function integer(min: number, max = Number.MAX_SAFE_INTEGER) {
  const expected = max === Number.MAX_SAFE_INTEGER ? `a whole number of at least ${min}` : `a whole number from ${min} to ${max}`
  return v.pipe(
    v.number((issue) => expectedGot(expected, issue.input)),
    v.metadata({ type: 'integer', minimum: min, ...(max === Number.MAX_SAFE_INTEGER ? {} : { maximum: max }) }),
    v.check((n) => Number.isSafeInteger(n) && n >= min && n <= max, (issue) => expectedGot(expected, issue.input)),
  )
}

/** A fraction in [0, 1], such as a failure rate. */
export function fraction() {
  const expected = 'a number from 0 to 1, like 0.5'
  return v.pipe(
    v.number((issue) => expectedGot(expected, issue.input)),
    v.metadata({ minimum: 0, maximum: 1 }),
    v.check((n) => n >= 0 && n <= 1, (issue) => expectedGot(expected, issue.input)),
  )
}

export function boolean() {
  return v.boolean((issue) => expectedGot('true or false', issue.input))
}

/**
 * A duration that may not be zero: a zero window, open period or stale age would mean nothing.
 * The check runs on the text, before it becomes milliseconds, so the message can quote it.
 */
export function positiveDuration() {
  return v.pipe(
    v.unknown(),
    // What the JSON Schema says of it: it stops at the first schema after v.unknown().
    v.metadata({ ...DURATION_HINT, type: 'string', description: 'a duration above zero, like "200ms" or "10s"' }),
    v.check(
      (input) => typeof input !== 'string' || parseDuration(input) !== 0,
      (issue) => expectedGot('a duration above zero, like "200ms" or "10s"', issue.input),
    ),
    duration(),
  )
}
