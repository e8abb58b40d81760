import * as v from 'valibot'
import { expectedGot } from '../../core/config-error.ts'
import { fraction, integer, table } from '../../core/schema-kit.ts'
import { GatewayError } from '../../core/errors.ts'
import type { Layer } from '../../proxy/exchange.ts'
import { CircuitBreaker, REJECTED, type Outcome } from './breaker.ts'
import { compileConditions, conditionList } from '../shared/conditions.ts'
import type { PolicyModule, RouteContext } from '../policy.ts'
import type { CircuitBreakerPolicy } from './types.ts'
import { positiveDuration } from '../../core/schema-kit.ts'

/** Defaults, and where each comes from: see the README's circuit breaker section. */
const DEFAULT_WINDOW_MS = 10_000 // opossum rollingCountTimeout, Hystrix rolling window, Linkerd's success-rate window
const DEFAULT_MIN_REQUESTS = 20 // Hystrix requestVolumeThreshold (r4j and Polly use 100: too slow to trip a sidecar's route)
const DEFAULT_FAILURE_RATE = 0.5 // r4j failureRateThreshold 50%, opossum errorThresholdPercentage 50
const DEFAULT_SLOW_RATE = 1 // r4j slowCallRateThreshold 100%
const DEFAULT_OPEN_FOR = '30s' // opossum resetTimeout
const DEFAULT_HALF_OPEN_REQUESTS = 3 // APISIX api-breaker healthy.successes
const DEFAULT_FAILURES = ['5xx', 'timeout', 'connect-failure']

/** A rate threshold: 0 would trip on every call, so it must be above zero. */
function threshold() {
  return v.pipe(
    fraction(),
    v.check((rate) => rate > 0, (issue) => expectedGot('a number above 0 and at most 1, like 0.5', issue.input)),
  )
}

const breakerTable = table({
  window: v.optional(positiveDuration()),
  window_requests: v.optional(integer(1)),
  min_requests: v.optional(integer(1)),
  failure_rate: v.optional(threshold(), DEFAULT_FAILURE_RATE),
  slow_call: v.optional(table({ duration: positiveDuration(), rate: v.optional(threshold(), DEFAULT_SLOW_RATE) })),
  open_for: v.optional(positiveDuration(), DEFAULT_OPEN_FOR),
  half_open_requests: v.optional(integer(1), DEFAULT_HALF_OPEN_REQUESTS),
  failures: v.optional(conditionList(), DEFAULT_FAILURES),
})

const breakerSchema = v.pipe(
  breakerTable,
  v.forward(
    v.partialCheck(
      [['window'], ['window_requests']],
      ({ window, window_requests }) => window === undefined || window_requests === undefined,
      'set either window (a time window) or window_requests (a count window), not both',
    ),
    ['window_requests'],
  ),
  v.forward(
    v.partialCheck(
      [['window_requests'], ['min_requests']],
      ({ window_requests, min_requests }) => window_requests === undefined || min_requests === undefined || min_requests <= window_requests,
      (issue) =>
        `${expectedGot(`at most window_requests (${issue.input.window_requests})`, issue.input.min_requests)}: the window never holds more calls`,
    ),
    ['min_requests'],
  ),
  v.transform((file): CircuitBreakerPolicy => {
    const count = file.window_requests
    const minRequests = file.min_requests ?? DEFAULT_MIN_REQUESTS
    const policy: CircuitBreakerPolicy = {
      ...(count === undefined ? { windowMs: file.window ?? DEFAULT_WINDOW_MS } : { windowRequests: count }),
      // A count window of 10 with the default of 20 would never decide; r4j caps it the same way.
      minRequests: count === undefined ? minRequests : Math.min(minRequests, count),
      failureRate: file.failure_rate,
      openForMs: file.open_for,
      halfOpenRequests: file.half_open_requests,
      failures: file.failures,
    }
    if (file.slow_call !== undefined) policy.slowCall = { durationMs: file.slow_call.duration, rate: file.slow_call.rate }
    return policy
  }),
)

/** resilience4j-style breaker per route and upstream: rates over a window, slow calls, several half-open probes. */
export const circuitBreakerPolicy: PolicyModule<CircuitBreakerPolicy, 'circuitBreaker'> = {
  key: 'circuit_breaker',
  field: 'circuitBreaker',
  schema: breakerSchema,
  builtInDefault: undefined,
  scope: 'upstream',
  layer: (policy, context) => circuitBreakerLayer(policy, context),
}

/**
 * Counts every try (it sits inside retry) and fails fast with 503 circuit_open while open, never
 * touching the upstream. Its state is listed by GET /breakers on the admin listener.
 */
export function circuitBreakerLayer(policy: CircuitBreakerPolicy, context: RouteContext): Layer {
  const route = context.route.name
  const upstream = context.upstream.config.name
  const breaker = context.keep('breaker', { policy, upstream }, () => new CircuitBreaker(policy, { route, upstream, events: context.events }))
  context.gateway.states.register('circuit_breaker', `${route}/${upstream}`, () => breaker.snapshot(context.now()))
  const isFailure = compileConditions(policy.failures)
  const slowMs = policy.slowCall?.durationMs ?? Number.POSITIVE_INFINITY
  const now = context.now
  const openMessage = `circuit breaker for upstream ${upstream} is open`
  const probesBusyMessage = `circuit breaker for upstream ${upstream} is half-open and its ${policy.halfOpenRequests} probe(s) are in flight`

  function rejection(): GatewayError {
    const retryInMs = breaker.retryInMs(now())
    const error = new GatewayError('circuit_open', breaker.state === 'open' ? openMessage : probesBusyMessage)
    // Half-open has no known end; a second is about how long the probes in flight should take.
    error.headers = { 'retry-after': String(Math.max(1, Math.ceil(retryInMs / 1000))) }
    return error
  }

  function outcomeOf(error: unknown): Outcome {
    if (!(error instanceof GatewayError) || error.code === 'client_closed') return 'ignored'
    return isFailure({ error }) ? 'failure' : 'success'
  }

  return (next) =>
    async function circuitBreaker(exchange) {
      const permit = breaker.admit(now())
      if (permit === REJECTED) throw rejection()
      const startedAt = now()
      let response: Response
      try {
        response = await next(exchange)
      } catch (error) {
        const endedAt = now()
        breaker.settle(permit, endedAt, outcomeOf(error), endedAt - startedAt >= slowMs)
        throw error
      }
      // Slow means slow to answer: the headers are in, the body has yet to stream.
      const endedAt = now()
      breaker.settle(permit, endedAt, isFailure({ status: response.status, response }) ? 'failure' : 'success', endedAt - startedAt >= slowMs)
      return response
    }
}

