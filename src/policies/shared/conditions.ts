import * as v from 'valibot'
import { expectedGot } from '../../core/config-error.ts'
import { arrayOf } from '../../core/schema-kit.ts'
import { GatewayError } from '../../core/errors.ts'
import { GRPC_CODE } from '../../core/grpc.ts'

/**
 * What came back from a try: an upstream status, or a gateway error (connect failure, reset, timeout...).
 * With the response, gRPC conditions read a trailers-only answer's grpc-status.
 */
export type TryResult = { status: number; error?: undefined; response?: Response } | { status?: undefined; error: GatewayError }

export type ConditionMatcher = (result: TryResult) => boolean

/** Envoy's gRPC retry_on names, for the grpc-status of a trailers-only answer. */
const GRPC_NAMED: Record<string, number> = {
  cancelled: GRPC_CODE.CANCELLED,
  'deadline-exceeded': GRPC_CODE.DEADLINE_EXCEEDED,
  'resource-exhausted': GRPC_CODE.RESOURCE_EXHAUSTED,
  internal: GRPC_CODE.INTERNAL,
  unavailable: GRPC_CODE.UNAVAILABLE,
}

const NAMED = ['5xx', 'gateway-error', 'retriable-4xx', 'connect-failure', 'reset', 'timeout', ...Object.keys(GRPC_NAMED)] as const
const EXPECTED = `one of ${NAMED.map((n) => `"${n}"`).join(', ')} or a status code like "429"`

export function conditionList() {
  const condition = v.pipe(
    v.union([v.string(), v.number()], (issue) => expectedGot(EXPECTED, issue.input)),
    v.transform((value) => String(value)),
    v.check((value) => (NAMED as readonly string[]).includes(value) || /^[1-5]\d\d$/.test(value), (issue) => expectedGot(EXPECTED, issue.input)),
  )
  return arrayOf(condition)
}

/** Compiled once at load into status and failure sets; matching a result is two lookups. */
export function compileConditions(conditions: readonly FailureCondition[]): ConditionMatcher {
  const statuses = new Set<number>()
  const failures = new Set<string>()
  const grpcStatuses = new Set<number>()
  let any5xx = false
  for (const condition of conditions) {
    switch (condition) {
      case '5xx':
        any5xx = true
        failures.add('timeout').add('reset').add('connect-failure').add('protocol-error')
        break
      case 'gateway-error':
        for (const status of [502, 503, 504]) statuses.add(status)
        failures.add('timeout').add('reset').add('connect-failure').add('protocol-error')
        break
      case 'retriable-4xx':
        statuses.add(409)
        break
      case 'connect-failure':
      case 'reset':
      case 'timeout':
        failures.add(condition)
        break
      default:
        if (condition in GRPC_NAMED) grpcStatuses.add(GRPC_NAMED[condition]!)
        else statuses.add(Number(condition))
    }
  }
  const matches: ConditionMatcher = (result) => {
    if (result.error !== undefined) return result.error.failure !== undefined && failures.has(result.error.failure)
    return statuses.has(result.status) || (any5xx && result.status >= 500)
  }
  if (grpcStatuses.size === 0) return matches
  // A gRPC failure comes with HTTP 200; only a trailers-only answer has its grpc-status when the headers arrive.
  return (result) => {
    if (matches(result)) return true
    if (result.error !== undefined) return false
    const grpcStatus = result.response?.headers.get('grpc-status')
    return grpcStatus !== undefined && grpcStatus !== null && grpcStatuses.has(Number(grpcStatus))
  }
}

export function isGatewayError(error: unknown): error is GatewayError {
  return error instanceof GatewayError
}

/**
 * What a retry, breaker or fallback counts as a failed call. Strings from the policy file:
 * "5xx", "gateway-error" (502, 503, 504), "retriable-4xx" (409), "connect-failure", "reset",
 * "timeout", an explicit status like "429", or a gRPC status: "cancelled", "deadline-exceeded",
 * "resource-exhausted", "internal", "unavailable".
 */
export type FailureCondition = string
