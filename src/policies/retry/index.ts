import * as v from 'valibot'
import { expectedGot } from '../../core/config-error.ts'
import { boolean, fraction, integer, table } from '../../core/schema-kit.ts'
import { duration, size } from '../../core/units.ts'
import { GatewayError } from '../../core/errors.ts'
import type { Exchange, Layer, Step } from '../../proxy/exchange.ts'
import { bufferForReplay, copyWhileStreaming, replayableAsIs } from '../../proxy/replay.ts'
import { isGrpcRequest } from '../../core/grpc.ts'
import { compileConditions, conditionList, type FailureCondition, type TryResult } from '../shared/conditions.ts'
import type { PolicyModule, RouteContext } from '../policy.ts'
import { RetryBudget } from './budget.ts'
import { waitFor } from '../../core/wait.ts'
import type { Abortable } from '../../core/cancel.ts'

/** RFC 9110 idempotent methods: safe to send twice. POST and PATCH only when listed. */
const IDEMPOTENT = ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']
/** Envoy ignores Retry-After beyond this (rate_limited_retry_back_off max_interval). */
const MAX_RETRY_AFTER_MS = 300_000

const schema = v.pipe(
  table({
    attempts: v.optional(integer(1, 10), 2),
    per_try_timeout: v.optional(duration(), '0s'),
    backoff: v.optional(table({ base: v.optional(duration(), '25ms'), max: v.optional(duration()) }), {}),
    on: v.optional(conditionList(), ['connect-failure', 'reset', 'gateway-error']),
    methods: v.optional(
      v.array(
        v.pipe(v.string((issue) => expectedGot('an HTTP method like "GET"', issue.input)), v.toUpperCase()),
        (issue) => expectedGot('an array', issue.input),
      ),
      IDEMPOTENT,
    ),
    idempotency_key: v.optional(boolean(), false),
    budget: v.optional(
      table({
        ratio: v.optional(fraction(), 0.2),
        min_per_second: v.optional(v.pipe(v.number((issue) => expectedGot('a number', issue.input)), v.minValue(0, (issue) => expectedGot('a number of at least 0', issue.input))), 10),
        ttl: v.optional(duration(), '10s'),
      }),
      {},
    ),
    max_body: v.optional(size(), '64kb'),
  }),
  v.transform(
    (t): RetryPolicy => ({
      attempts: t.attempts,
      perTryTimeoutMs: t.per_try_timeout,
      backoff: { baseMs: t.backoff.base, maxMs: t.backoff.max ?? t.backoff.base * 10 },
      on: t.on,
      methods: t.methods,
      idempotencyKey: t.idempotency_key,
      budget: { ratio: t.budget.ratio, minPerSecond: t.budget.min_per_second, ttlMs: t.budget.ttl },
      maxBodyBytes: t.max_body!, // the default goes through size(), so it is a number
    }),
  ),
)

/** Retries with exponential backoff and full jitter, a budget, per-try timeouts and Retry-After. */
export const retryPolicy: PolicyModule<RetryPolicy, 'retry'> = {
  key: 'retry',
  field: 'retry',
  schema,
  builtInDefault: undefined,
  layer: (policy, context) => retryLayer(policy, context),
}

/** Full jitter (AWS architecture blog; Envoy's default): uniform in [0, min(max, base × 2^(n-1))). */
export function backoffDelay(retry: number, baseMs: number, maxMs: number, random: number): number {
  return random * Math.min(maxMs, baseMs * 2 ** (retry - 1))
}

/** Retry-After as delta-seconds or an HTTP date; undefined when absent, unreadable or in the past. */
export function retryAfterMs(value: string | null, nowEpochMs: number): number | undefined {
  if (value === null) return undefined
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000
  if (!/^[A-Za-z]{3},? /.test(value.trim())) return undefined // HTTP dates start with a day name
  const date = Date.parse(value)
  if (Number.isNaN(date)) return undefined
  return Math.max(0, date - nowEpochMs)
}

export function retryLayer(policy: RetryPolicy, context: RouteContext): Layer {
  const { attempts, perTryTimeoutMs, backoff, maxBodyBytes, idempotencyKey } = policy
  const retriable = compileConditions(policy.on)
  const methods = new Set(policy.methods)
  const { ratio, minPerSecond, ttlMs } = policy.budget
  const budget = context.keep('retry-budget', policy.budget, () => new RetryBudget(ratio, minPerSecond, ttlMs, context.now()))
  const routeName = context.route.name
  const events = context.events
  const perTryMessage = `no response within per_try_timeout ${perTryTimeoutMs}ms`

  const mayRetry = (exchange: Exchange): boolean => {
    const request = exchange.request
    return methods.has(request.method) || (idempotencyKey && request.headers.has('idempotency-key'))
  }

  /** One try, under its own deadline when per_try_timeout is set; cleared once headers are back. */
  const tryOnce = async (next: Step, exchange: Exchange): Promise<TryOutcome> => {
    let timer: ReturnType<typeof setTimeout> | undefined
    if (perTryTimeoutMs > 0) {
      const attempt = new TryAbort(exchange.signal)
      timer = setTimeout(expireTry, perTryTimeoutMs, attempt.controller, perTryMessage)
      exchange.attemptSignal = attempt.controller.signal
    }
    try {
      const response = await next(exchange)
      return { status: response.status, response }
    } catch (error) {
      if (!(error instanceof GatewayError)) throw error
      return { error }
    } finally {
      clearTimeout(timer)
    }
  }

  return (next) =>
    async function retry(exchange: Exchange): Promise<Response> {
      budget.deposit(context.now())
      const allowed = attempts > 1 && mayRetry(exchange)
      // A gRPC call's body goes on as it arrives (it may be a stream); any other is read first.
      const streaming = allowed && isGrpcRequest(exchange.request.headers) ? copyWhileStreaming(exchange, maxBodyBytes) : undefined
      const eligible = allowed && (streaming !== undefined || replayableAsIs(exchange.body) || (await bufferForReplay(exchange, maxBodyBytes)))
      if (eligible) exchange.tried = []
      for (let attempt = 1; ; attempt++) {
        const result = await tryOnce(next, exchange)
        let giveUpReason = eligible ? whyNotRetry(result, attempt, exchange) : 'not retriable'
        if (giveUpReason === undefined && streaming !== undefined && !(await streaming.replayable())) giveUpReason = 'request still streaming'
        if (giveUpReason !== undefined) return finish(result, exchange, attempt > 1 ? giveUpReason : undefined)
        const delayMs = delayBefore(attempt, result, exchange)
        if (delayMs === undefined || !budget.tryWithdraw(context.now())) {
          if (delayMs !== undefined) events.emit('retry_budget_exhausted', { route: routeName })
          return finish(result, exchange, delayMs === undefined ? 'deadline' : 'budget exhausted')
        }
        result.response?.body?.cancel().catch(() => {})
        events.emit('retry', { route: routeName, attempt: attempt + 1, reason: describeResult(result), delayMs })
        await waitFor(delayMs, exchange.signal)
      }
    }

  function whyNotRetry(result: TryResult, attempt: number, exchange: Exchange): string | undefined {
    if (exchange.signal.aborted) return 'cancelled'
    if (!retriable(result)) return 'not a retry condition'
    if (attempt >= attempts) return 'attempts exhausted'
    return undefined
  }

  /** The wait before the next try, or undefined when the next try could not finish before the route deadline. */
  function delayBefore(attempt: number, result: TryOutcome, exchange: Exchange): number | undefined {
    let delayMs = backoffDelay(attempt, backoff.baseMs, backoff.maxMs, context.random())
    if (result.status === 429 || result.status === 503) {
      const hinted = retryAfterMs(result.response.headers.get('retry-after'), Date.now())
      if (hinted !== undefined && hinted <= MAX_RETRY_AFTER_MS) delayMs = Math.max(delayMs, hinted)
    }
    const remainingMs = exchange.deadline - context.now()
    return remainingMs - delayMs >= (perTryTimeoutMs > 0 ? perTryTimeoutMs : 1) ? delayMs : undefined
  }

  function finish(result: TryOutcome, exchange: Exchange, giveUp: string | undefined): Response {
    const tries = String(exchange.attempts)
    if (giveUp !== undefined) events.emit('retry_give_up', { route: routeName, attempts: exchange.attempts, reason: giveUp })
    if (result.error === undefined) {
      result.response.headers.set('x-pillion-attempts', tries)
      return result.response
    }
    result.error.headers = { ...result.error.headers, 'x-pillion-attempts': tries }
    throw result.error
  }
}

type TryOutcome =
  | { status: number; response: Response; error?: undefined }
  | { status?: undefined; response?: undefined; error: GatewayError }

function describeResult(result: TryResult): string {
  return result.error !== undefined ? (result.error.failure ?? result.error.code) : String(result.status)
}

/**
 * A try's own cancellation: aborted when the exchange is, or when per_try_timeout passes. An
 * EventListener object and a module-level timer callback, so a try allocates no closures.
 */
class TryAbort {
  readonly controller = new AbortController()
  readonly #parent: Abortable

  constructor(parent: Abortable) {
    this.#parent = parent
    if (parent.aborted) this.controller.abort(parent.reason)
    else parent.addEventListener('abort', this, { once: true })
  }

  handleEvent(): void {
    this.controller.abort(this.#parent.reason)
  }
}

function expireTry(controller: AbortController, message: string): void {
  controller.abort(new GatewayError('upstream_timeout', message))
}

export interface RetryPolicy {
  attempts: number // total tries including the first
  perTryTimeoutMs: number // 0: each try may use what is left of the route timeout
  backoff: { baseMs: number; maxMs: number } // exponential with full jitter
  on: FailureCondition[]
  methods: string[] // upper-case
  idempotencyKey: boolean // also retry any method when the request carries Idempotency-Key
  budget: { ratio: number; minPerSecond: number; ttlMs: number }
  maxBodyBytes: number // larger request bodies are streamed once and never retried
}

declare module '../../core/events.ts' {
  interface GatewayEventMap {
    retry: { route: string; attempt: number; reason: string; delayMs: number }
    retry_give_up: { route: string; attempts: number; reason: string }
    retry_budget_exhausted: { route: string }
  }
}
