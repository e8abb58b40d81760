import * as v from 'valibot'
import type { FallbackPolicy } from '../config/types.ts'
import type { Layer } from '../proxy/exchange.ts'
import type { RouteContext } from './context.ts'
import type { PolicyModule } from './index.ts'

// Placeholder: being implemented (issue 3, fallback responses).
export const fallbackPolicy: PolicyModule<'fallback'> = {
  key: 'fallback',
  field: 'fallback',
  schema: v.custom<FallbackPolicy>(() => false, 'fallback is not implemented yet'),
  builtInDefault: undefined,
}

export function fallbackLayer(_policy: FallbackPolicy, _context: RouteContext): Layer {
  return (next) => next
}
