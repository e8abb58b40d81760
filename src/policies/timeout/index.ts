import { duration } from '../../core/units.ts'
import { GatewayError } from '../../core/errors.ts'
import type { Exchange, Layer } from '../../proxy/exchange.ts'
import type { PolicyModule } from '../policy.ts'
import { deadlineAtMost } from '../shared/strictness.ts'

/** Whole-request deadline, response body included; 15s matches Envoy's route default, "0s" turns it off. */
export const timeoutPolicy: PolicyModule<number, 'timeoutMs'> = {
  key: 'timeout',
  field: 'timeoutMs',
  schema: duration(),
  builtInDefault: 15_000,
  // A shorter deadline holds nothing longer; 0 (none) is the weakest.
  weakerThan: (own, locked) => deadlineAtMost('', own, locked),
  layer: (timeoutMs) => (timeoutMs > 0 ? timeoutLayer(timeoutMs) : undefined),
}

/** Aborts the exchange with upstream_timeout when the deadline passes before the response is fully delivered. */
export function timeoutLayer(timeoutMs: number): Layer {
  const message = `no complete response within ${timeoutMs}ms`
  return (next) =>
    function timeout(exchange) {
      exchange.deadline = exchange.startedAt + timeoutMs
      exchange.deadlineTimer = setTimeout(expire, timeoutMs, exchange, message)
      return next(exchange)
    }
}

/** One shared callback for every request's deadline: the exchange and message come as arguments. */
function expire(exchange: Exchange, message: string): void {
  exchange.controller.abort(new GatewayError('upstream_timeout', message))
}
