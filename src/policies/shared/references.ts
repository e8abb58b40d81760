import { missingReference, type ConfigProblem } from '../../core/config-error.ts'
import type { FileFacts } from '../policy.ts'

/** The problem with `name` at `at` when it names no upstream of the file (fallback, mirror, split). */
export function upstreamReference(name: unknown, at: string, file: FileFacts): ConfigProblem[] {
  const missing = missingReference('upstream', name, [...file.upstreamNames])
  return missing === undefined ? [] : [{ path: at, message: missing }]
}

export function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date)
}
