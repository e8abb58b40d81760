import type { Weakening } from '../policy.ts'

/**
 * Comparisons for PolicyModule.weakerThan: each returns the weakenings of one key, empty when the
 * service's own value is at least as strict as the locked one.
 */

/** Structural equality of normalized config values (plain data: numbers, strings, arrays, tables). */
export function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false
  if (Array.isArray(a) !== Array.isArray(b)) return false
  const aKeys = Object.keys(a).filter((key) => (a as Record<string, unknown>)[key] !== undefined)
  const bKeys = Object.keys(b).filter((key) => (b as Record<string, unknown>)[key] !== undefined)
  if (aKeys.length !== bKeys.length) return false
  return aKeys.every((key) => sameValue((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]))
}

/** How a normalized value reads in a message. */
export function show(value: unknown): string {
  if (value === undefined) return 'nothing'
  if (Array.isArray(value)) return `[${value.map(show).join(', ')}]`
  return JSON.stringify(value)
}

function weakening(path: string, message: string): Weakening[] {
  return [{ path, message }]
}

/** The locked value, exactly. */
export function equal(path: string, own: unknown, locked: unknown): Weakening[] {
  return sameValue(own, locked) ? [] : weakening(path, `is locked to ${show(locked)}, got ${show(own)}`)
}

/** A number no higher than the locked one (a size, a count, a rate). */
export function atMost(path: string, own: number, locked: number, unit = ''): Weakening[] {
  return own <= locked ? [] : weakening(path, `expected at most ${locked}${unit}, got ${own}${unit}`)
}

/** A number no lower than the locked one. */
export function atLeast(path: string, own: number, locked: number, unit = ''): Weakening[] {
  return own >= locked ? [] : weakening(path, `expected at least ${locked}${unit}, got ${own}${unit}`)
}

/** A deadline in ms no longer than the locked one, where 0 means none (the weakest). */
export function deadlineAtMost(path: string, own: number, locked: number): Weakening[] {
  if (locked === 0 || (own !== 0 && own <= locked)) return []
  return weakening(path, `expected at most ${locked}ms, got ${own === 0 ? 'none (0)' : `${own}ms`}`)
}

/** An optional limit: absent in the locked value means unlimited; present means own must be present and no higher. */
export function optionalAtMost(path: string, own: number | undefined, locked: number | undefined, unit = ''): Weakening[] {
  if (locked === undefined) return []
  if (own === undefined) return weakening(path, `expected at most ${locked}${unit}, got no limit`)
  return atMost(path, own, locked, unit)
}

/**
 * A list that allows: own may name fewer items than the locked list, never others. An absent locked
 * list allows anything; an absent own list (anything) is weaker than a present locked one.
 */
export function within(path: string, own: readonly unknown[] | undefined, locked: readonly unknown[] | undefined): Weakening[] {
  if (locked === undefined) return []
  if (own === undefined) return weakening(path, `expected a list within ${show(locked)}, got none (anything)`)
  const extra = own.filter((item) => !locked.some((allowed) => sameValue(item, allowed)))
  return extra.length === 0 ? [] : weakening(path, `${show(extra)} ${extra.length === 1 ? 'is' : 'are'} not in the locked list ${show(locked)}`)
}

/** A list that requires or refuses: own must keep every item of the locked list, and may add more. */
export function including(path: string, own: readonly unknown[], locked: readonly unknown[]): Weakening[] {
  const missing = locked.filter((item) => !own.some((kept) => sameValue(item, kept)))
  return missing.length === 0 ? [] : weakening(path, `must keep ${show(missing)} of the locked list ${show(locked)}`)
}

/** A switch whose locked "true" is the strict side: requireExpiration. */
export function keptOn(path: string, own: boolean, locked: boolean): Weakening[] {
  return !locked || own ? [] : weakening(path, 'is locked to true, got false')
}

/** A switch whose locked "false" is the strict side: credentials, forward_key, enabled. */
export function keptOff(path: string, own: boolean, locked: boolean): Weakening[] {
  return locked || !own ? [] : weakening(path, 'is locked to false, got true')
}
