import * as v from 'valibot'
import { expectedGot } from './config-error.ts'

/** Durations normalize to milliseconds, sizes to bytes, rates to events per second. */

const MS_PER_UNIT: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/g
const DURATION = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/

/** "250ms", "2s", "1.5s", "1m", "1h", and Go-style sums like "1m30s". Result is whole milliseconds. */
export function parseDuration(text: string): number | undefined {
  if (!DURATION.test(text)) return undefined
  let ms = 0
  for (const [, amount, unit] of text.matchAll(DURATION_PART)) ms += Number(amount) * MS_PER_UNIT[unit!]!
  return Math.round(ms)
}

const BYTES_PER_UNIT = new Map([
  ['b', 1],
  ['kb', 1024],
  ['kib', 1024],
  ['mb', 1024 ** 2],
  ['mib', 1024 ** 2],
  ['gb', 1024 ** 3],
  ['gib', 1024 ** 3],
])
const SIZE = /^(\d+(?:\.\d+)?)\s*([a-z]+)$/i

/** "512b", "64kb", "1mb", "1gb"; kb/mb/gb are binary (1kb = 1024 bytes) as in nginx and Envoy. Whole bytes. */
export function parseSize(text: string): number | undefined {
  const [, amount, unit] = SIZE.exec(text) ?? []
  const bytesPerUnit = unit === undefined ? undefined : BYTES_PER_UNIT.get(unit.toLowerCase())
  if (bytesPerUnit === undefined) return undefined
  return Math.round(Number(amount) * bytesPerUnit)
}

const SECONDS_PER_UNIT = new Map([
  ['s', 1],
  ['sec', 1],
  ['second', 1],
  ['m', 60],
  ['min', 60],
  ['minute', 60],
  ['h', 3600],
  ['hr', 3600],
  ['hour', 3600],
  ['d', 86_400],
  ['day', 86_400],
])
const RATE = /^(\d+(?:\.\d+)?)\s*\/\s*([a-z]+)$/i

/** "100/s", "6000/min", "10/m", "5/h", "1000/d" → events per second. */
export function parseRate(text: string): number | undefined {
  const [, count, unit] = RATE.exec(text) ?? []
  const seconds = unit === undefined ? undefined : SECONDS_PER_UNIT.get(unit.toLowerCase())
  if (seconds === undefined) return undefined
  return Number(count) / seconds
}

const DURATION_EXAMPLE = 'a duration like "250ms", "2s" or "1m"'
const SIZE_EXAMPLE = 'a size like "512b", "64kb" or "1mb"'
const RATE_EXAMPLE = 'a rate like "100/s", "6000/min" or "5/h"'

/** A word in any case, as a JSON Schema pattern (which has no flags): "kb" -> "[kK][bB]". */
function anyCase(word: string): string {
  return [...word].map((char) => `[${char.toLowerCase()}${char.toUpperCase()}]`).join('')
}

/**
 * What editors are told about each string format (schema/pillion.schema.json, written by
 * scripts/schema.ts): metadata only, skipped when a file is validated.
 */
export const DURATION_HINT = { description: DURATION_EXAMPLE, pattern: DURATION.source }
const SIZE_HINT = {
  description: SIZE_EXAMPLE,
  pattern: `^\\d+(?:\\.\\d+)?\\s*(?:${[...BYTES_PER_UNIT.keys()].map(anyCase).join('|')})$`,
}
const RATE_HINT = {
  description: RATE_EXAMPLE,
  pattern: `^\\d+(?:\\.\\d+)?\\s*/\\s*(?:${[...SECONDS_PER_UNIT.keys()].map(anyCase).join('|')})$`,
}

/** Longer timers overflow to an immediate timeout in every runtime's setTimeout. */
export const MAX_DURATION_MS = 2 ** 31 - 1

/** Valibot schema: duration string → milliseconds. Plain numbers are refused: the unit would be a guess. */
export function duration() {
  return v.pipe(
    v.string((issue) =>
      typeof issue.input === 'number'
        ? `${expectedGot(DURATION_EXAMPLE, issue.input)} (a plain number has no unit: write "${issue.input}s" or "${issue.input}ms")`
        : expectedGot(DURATION_EXAMPLE, issue.input),
    ),
    v.metadata(DURATION_HINT),
    v.rawTransform<string, number>(({ dataset, addIssue, NEVER }) => {
      const conversion = toDuration(dataset.value)
      if (conversion.problem !== undefined) {
        addIssue({ message: conversion.problem })
        return NEVER
      }
      return conversion.value
    }),
  )
}

function toDuration(text: string): Conversion<number> {
  const ms = parseDuration(text)
  if (ms === undefined) return { problem: expectedGot(DURATION_EXAMPLE, text) }
  if (ms > MAX_DURATION_MS) return { problem: expectedGot('a duration of at most "596h"', text) }
  // Rounding "0.4ms" down to 0 would silently mean "off" for policies like timeout.
  if (ms === 0 && /[1-9]/.test(text)) return { problem: expectedGot('a duration of at least "1ms" (or "0s")', text) }
  return { value: ms }
}

/** Valibot schema: size string → bytes. A plain non-negative integer is taken as bytes. */
export function size() {
  return v.union(
    [
      v.pipe(
        v.number(),
        v.metadata({ type: 'integer', minimum: 0, description: 'a number of bytes' }),
        v.check((bytes) => Number.isSafeInteger(bytes) && bytes >= 0, sizeMessage),
      ),
      convertedString(
        SIZE_EXAMPLE,
        (text) => {
          const bytes = parseSize(text)
          return bytes === undefined ? { problem: expectedGot(SIZE_EXAMPLE, text) } : { value: bytes }
        },
        SIZE_HINT,
      ),
    ],
    sizeMessage,
  )
}

function sizeMessage(issue: { input: unknown }): string {
  return expectedGot(SIZE_EXAMPLE, issue.input)
}

/** Valibot schema: rate string → events per second. */
export function rate() {
  return convertedString(
    RATE_EXAMPLE,
    (text) => {
      const perSecond = parseRate(text)
      return perSecond === undefined ? { problem: expectedGot(RATE_EXAMPLE, text) } : { value: perSecond }
    },
    RATE_HINT,
  )
}

export type Conversion<T> = { value: T; problem?: undefined } | { problem: string }

/**
 * Valibot schema for a string the file spells in some format: `convert` yields the value or a problem.
 * `hint` adds to what the JSON Schema says of it (a pattern); `expected` is its description.
 */
export function convertedString<T>(expected: string, convert: (text: string) => Conversion<T>, hint: { pattern?: string } = {}) {
  return v.pipe(
    v.string((issue) => expectedGot(expected, issue.input)),
    v.metadata({ description: expected, ...hint }),
    v.rawTransform<string, T>(({ dataset, addIssue, NEVER }) => {
      const conversion = convert(dataset.value)
      if (conversion.problem !== undefined) {
        addIssue({ message: conversion.problem })
        return NEVER
      }
      return conversion.value
    }),
  )
}
