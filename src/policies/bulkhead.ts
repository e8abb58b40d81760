import * as v from 'valibot'
import type { BulkheadPolicy } from '../config/types.ts'
import type { Layer } from '../proxy/exchange.ts'
import type { RouteContext } from './context.ts'
import type { PolicyModule } from './index.ts'

// Placeholder: being implemented (issue 3, bulkheads).
export const bulkheadPolicy: PolicyModule<'bulkhead'> = {
  key: 'bulkhead',
  field: 'bulkhead',
  schema: v.custom<BulkheadPolicy>(() => false, 'bulkhead is not implemented yet'),
  builtInDefault: undefined,
}

export function bulkheadLayer(_policy: BulkheadPolicy, _context: RouteContext): Layer {
  return (next) => next
}
