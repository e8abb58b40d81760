import { duration } from '../config/units.ts'
import { GatewayError } from '../errors.ts'
import type { Layer } from '../proxy/exchange.ts'
import type { PolicyModule } from './index.ts'

/** Whole-request deadline, response body included; 15s matches Envoy's route default, "0s" turns it off. */
export const timeoutPolicy: PolicyModule<'timeoutMs'> = {
  key: 'timeout',
  field: 'timeoutMs',
  schema: duration(),
  builtInDefault: 15_000,
}

/** Aborts the exchange with upstream_timeout when the deadline passes before the response is fully delivered. */
export function timeoutLayer(timeoutMs: number): Layer {
  const message = `no complete response within ${timeoutMs}ms`
  return (next) =>
    function timeout(exchange) {
      exchange.deadline = exchange.startedAt + timeoutMs
      const timer = setTimeout(() => exchange.controller.abort(new GatewayError('upstream_timeout', message)), timeoutMs)
      exchange.onFinish(() => clearTimeout(timer))
      return next(exchange)
    }
}
