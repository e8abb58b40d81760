import * as v from 'valibot'
import type { RetryPolicy } from '../config/types.ts'
import type { Layer } from '../proxy/exchange.ts'
import type { RouteContext } from './context.ts'
import type { PolicyModule } from './index.ts'

export const retryPolicy: PolicyModule<'retry'> = {
  key: 'retry',
  field: 'retry',
  schema: v.custom<RetryPolicy>(() => false, 'retry is not implemented yet'),
  builtInDefault: undefined,
}

export function retryLayer(_policy: RetryPolicy, _context: RouteContext): Layer {
  return (next) => next
}
