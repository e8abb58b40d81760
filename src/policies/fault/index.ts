import * as v from 'valibot'
import { boolean, integer, table } from '../../core/schema-kit.ts'
import { MAX_DURATION_MS } from '../../core/units.ts'
import type { Exchange, Layer } from '../../proxy/exchange.ts'
import type { PolicyModule, RouteContext } from '../policy.ts'
import { inPercent, percent } from '../shared/percent.ts'
import { waitFor } from '../../core/wait.ts'
import { positiveDuration } from '../../core/schema-kit.ts'

/** Request headers that inject a fault into that request, when header_control is on. */
export const FAULT_DELAY_HEADER = 'x-pillion-fault-delay'
export const FAULT_ABORT_HEADER = 'x-pillion-fault-abort'

/** Statuses whose responses cannot carry a body (the Response constructor refuses one). */
const NULL_BODY_STATUSES = new Set([204, 205, 304])

const faultSchema = v.pipe(
  table({
    // No default percentage: a fault that silently hits every request is not a default anyone wants.
    delay: v.optional(table({ percent: percent(), duration: positiveDuration() })),
    // Envoy's abort range, [200, 600).
    abort: v.optional(table({ percent: percent(), status: integer(200, 599) })),
    header_control: v.optional(boolean(), false),
  }),
  v.check(
    (file) => file.delay !== undefined || file.abort !== undefined || file.header_control,
    'expected delay, abort or header_control = true',
  ),
  v.transform((file): FaultPolicy => {
    const policy: FaultPolicy = { headerControl: file.header_control }
    if (file.delay !== undefined) policy.delay = { percent: file.delay.percent, durationMs: file.delay.duration }
    if (file.abort !== undefined) policy.abort = { percent: file.abort.percent, status: file.abort.status }
    return policy
  }),
)

/** [routes.fault]: injected delays and aborts, to test how the chain and the client cope. */
export const faultPolicy: PolicyModule<FaultPolicy, 'fault'> = {
  key: 'fault',
  field: 'fault',
  schema: faultSchema,
  builtInDefault: undefined,
  scope: 'upstream',
  layer: (policy, context) => faultLayer(policy, context),
}

/** `x-pillion-fault-delay: 500` → 500; anything but whole milliseconds is ignored, as Envoy ignores it. */
export function headerDelayMs(value: string | null): number | undefined {
  if (value === null || !/^\d{1,10}$/.test(value.trim())) return undefined
  const ms = Number(value.trim())
  return ms > 0 && ms <= MAX_DURATION_MS ? ms : undefined
}

/** `x-pillion-fault-abort: 503` → 503, for statuses 200–599; anything else is ignored. */
export function headerAbortStatus(value: string | null): number | undefined {
  if (value === null || !/^\d{3}$/.test(value.trim())) return undefined
  const status = Number(value.trim())
  return status >= 200 && status <= 599 ? status : undefined
}

/**
 * Sits just above forward, inside retry and the circuit breaker, so both react to an injected fault
 * as to a real one: an abort is an upstream answer with that status, a delay is a slow upstream
 * (and the route and per-try timeouts cut it short). A delay then proceeds; an abort never reaches
 * the upstream, so endpoint health is untouched. Each injection emits `fault_injected` and marks
 * `exchange.fault`, so metrics can tell injected failures from real ones.
 *
 * @example faultLayer({ abort: { percent: 5, status: 503 }, headerControl: false }, context)
 */
export function faultLayer(policy: FaultPolicy, context: RouteContext): Layer {
  const { delay, abort, headerControl } = policy
  const route = context.route.name
  const upstream = context.upstream.config.name
  const events = context.events
  const random = context.random

  return (next) =>
    async function fault(exchange: Exchange): Promise<Response> {
      let headerDelay: number | undefined
      let headerAbort: number | undefined
      if (headerControl) {
        const headers = exchange.request.headers
        const delayValue = headers.get(FAULT_DELAY_HEADER)
        const abortValue = headers.get(FAULT_ABORT_HEADER)
        // They are orders to this gateway, not part of the request.
        if (delayValue !== null) exchange.setUpstreamHeader(FAULT_DELAY_HEADER, null)
        if (abortValue !== null) exchange.setUpstreamHeader(FAULT_ABORT_HEADER, null)
        headerDelay = headerDelayMs(delayValue)
        headerAbort = headerAbortStatus(abortValue)
      }
      const delayMs = headerDelay ?? (delay !== undefined && inPercent(delay.percent, random) ? delay.durationMs : undefined)
      if (delayMs !== undefined) {
        mark(exchange, 'delay')
        events.emit('fault_injected', { route, upstream, kind: 'delay', source: headerDelay === undefined ? 'percent' : 'header', delayMs })
        await waitFor(delayMs, exchange.attemptSignal)
      }
      const status = headerAbort ?? (abort !== undefined && inPercent(abort.percent, random) ? abort.status : undefined)
      if (status !== undefined) {
        mark(exchange, 'abort')
        // A try, as far as retry's x-pillion-attempts and the logs are concerned: it "reached" the upstream.
        exchange.attempts++
        events.emit('fault_injected', { route, upstream, kind: 'abort', source: headerAbort === undefined ? 'percent' : 'header', status })
        return abortResponse(status, exchange.requestId)
      }
      const response = await next(exchange)
      if (delayMs !== undefined) response.headers.set('x-pillion-fault', 'delay')
      return response
    }
}

/** `exchange.fault` lists what was injected into this request: "delay", "abort" or "delay,abort". */
function mark(exchange: Exchange, kind: 'delay' | 'abort'): void {
  const before = exchange.fault
  if (before === undefined) exchange.fault = kind
  else if (!before.split(',').includes(kind)) exchange.fault = `${before},${kind}`
}

/** What the upstream "answered": the status, a small JSON body saying it was injected. */
function abortResponse(status: number, requestId: string): Response {
  const headers = new Headers()
  headers.set('x-pillion-fault', 'abort')
  headers.set('x-pillion-error', 'fault_injected')
  headers.set('x-request-id', requestId)
  if (NULL_BODY_STATUSES.has(status)) return new Response(null, { status, headers })
  headers.set('content-type', 'application/json')
  const body = JSON.stringify({ code: 'fault_injected', message: `injected fault: abort with status ${status}`, request_id: requestId })
  return new Response(body, { status, headers })
}

/** Injected delays and aborts; percentages 0–100, fractions allowed. */
export interface FaultPolicy {
  delay?: { percent: number; durationMs: number }
  abort?: { percent: number; status: number }
  /** x-pillion-fault-delay / x-pillion-fault-abort request headers inject per request. */
  headerControl: boolean
}

declare module '../../core/events.ts' {
  interface GatewayEventMap {
    fault_injected: { route: string; upstream: string; kind: 'delay' | 'abort'; source: 'percent' | 'header'; delayMs?: number; status?: number }
  }
}
