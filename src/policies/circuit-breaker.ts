import * as v from 'valibot'
import type { CircuitBreakerPolicy } from '../config/types.ts'
import type { Layer } from '../proxy/exchange.ts'
import type { RouteContext } from './context.ts'
import type { PolicyModule } from './index.ts'

// Placeholder: being implemented (issue 3, circuit breakers).
export const circuitBreakerPolicy: PolicyModule<'circuitBreaker'> = {
  key: 'circuit_breaker',
  field: 'circuitBreaker',
  schema: v.custom<CircuitBreakerPolicy>(() => false, 'circuit_breaker is not implemented yet'),
  builtInDefault: undefined,
}

export function circuitBreakerLayer(_policy: CircuitBreakerPolicy, _context: RouteContext): Layer {
  return (next) => next
}
