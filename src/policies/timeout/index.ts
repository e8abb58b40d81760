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
      const asked = exchange.request.headers.get('grpc-timeout')
      const grpcMs = asked === null ? undefined : grpcTimeoutMs(asked)
      if (grpcMs !== undefined && grpcMs < timeoutMs) {
        // A gRPC client's own deadline, when shorter, is the call's (Envoy's max_grpc_timeout does the same).
        exchange.deadline = exchange.startedAt + grpcMs
        exchange.grpcDeadline = true
        exchange.deadlineTimer = setTimeout(expire, grpcMs, exchange, `the call's grpc-timeout of ${asked} passed`)
        return next(exchange)
      }
      exchange.deadline = exchange.startedAt + timeoutMs
      exchange.deadlineTimer = setTimeout(expire, timeoutMs, exchange, message)
      return next(exchange)
    }
}

const GRPC_TIMEOUT = /^(\d{1,8})([HMSmun])$/
const GRPC_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 }

/** grpc-timeout ("100m", "5S": at most 8 digits and a unit, gRPC over HTTP/2) in milliseconds; undefined when malformed. */
export function grpcTimeoutMs(value: string): number | undefined {
  const match = GRPC_TIMEOUT.exec(value)
  return match === null ? undefined : Number(match[1]) * GRPC_UNIT_MS[match[2]!]!
}

/** One shared callback for every request's deadline: the exchange and message come as arguments. */
function expire(exchange: Exchange, message: string): void {
  exchange.controller.abort(new GatewayError('upstream_timeout', message))
}
