import * as v from 'valibot'
import { integer, name, table } from '../../core/schema-kit.ts'
import { size } from '../../core/units.ts'
import { GatewayError } from '../../core/errors.ts'
import type { GatewayEventMap } from '../../core/events.ts'
import { Exchange, type Layer, type Step } from '../../proxy/exchange.ts'
import { bufferForReplay, replayableAsIs } from '../../proxy/replay.ts'
import { isTable, upstreamReference } from '../shared/references.ts'
import type { PolicyModule, RouteContext } from '../policy.ts'
import { inPercent, percent } from '../shared/percent.ts'
import { discardBody } from '../../core/body.ts'
import { positiveDuration } from '../../core/schema-kit.ts'

/**
 * Copies in flight at once, per route. Enough for a shadow answering in 100ms to keep up with
 * 1000 requests a second; a shadow that falls further behind loses copies instead of piling them up.
 */
const DEFAULT_MAX_IN_FLIGHT = 100
/** The retry policy's replay limit (Envoy's and Linkerd's 64 KiB): one buffered copy serves both. */
const DEFAULT_MAX_BODY = '64kb'
/**
 * Shorter than the 15s route default: nobody reads a shadow's answer, and a hung shadow should give
 * its max_in_flight slot back soon. Long enough for any answer worth comparing.
 */
const DEFAULT_TIMEOUT = '5s'

const SHADOW_HEADER: [string, string] = ['x-pillion-shadow', '1']

const mirrorSchema = v.pipe(
  table({
    upstream: name(),
    percent: v.optional(percent(), 100),
    max_in_flight: v.optional(integer(1), DEFAULT_MAX_IN_FLIGHT),
    max_body: v.optional(size(), DEFAULT_MAX_BODY),
    timeout: v.optional(positiveDuration(), DEFAULT_TIMEOUT),
  }),
  v.transform(
    (file): MirrorPolicy => ({
      upstream: file.upstream,
      percent: file.percent,
      maxInFlight: file.max_in_flight,
      maxBodyBytes: file.max_body!, // the default goes through size(), so it is a number
      timeoutMs: file.timeout,
    }),
  ),
)

/** [routes.mirror]: a shadow copy of each request to another upstream, never waited on. */
export const mirrorPolicy: PolicyModule<MirrorPolicy, 'mirror'> = {
  key: 'mirror',
  field: 'mirror',
  schema: mirrorSchema,
  builtInDefault: undefined,
  references: (value, at, file) => (isTable(value) ? upstreamReference(value.upstream, `${at}.upstream`, file) : []),
  layer: (policy, context) => mirrorLayer(policy, context),
}

/**
 * Sends a copy of the request, marked `x-pillion-shadow: 1`, to the mirror upstream and passes the
 * original on at once. The client's answer never waits for the copy and never sees how it went: the
 * copy has its own deadline, is not cancelled when the client leaves, and its answer is discarded.
 * A copy needs the request body in memory, so a body up to max_body is buffered (which also makes it
 * replayable for a retry below); a larger one is not copied. Past max_in_flight copies are dropped.
 *
 * @example mirrorLayer({ upstream: 'orders-v2', percent: 100, maxInFlight: 100, maxBodyBytes: 65536, timeoutMs: 5000 }, context)
 */
export function mirrorLayer(policy: MirrorPolicy, context: RouteContext): Layer {
  const upstream = context.upstreams.get(policy.upstream)
  // load.ts checks the name for routes; this catches any path around that check at load, not per request.
  if (upstream === undefined) throw new Error(`mirror upstream ${JSON.stringify(policy.upstream)} is not defined`)
  const forward: Step = context.forwardTo(upstream)
  const { percent: share, maxInFlight, maxBodyBytes, timeoutMs } = policy
  const route = context.route.name
  const events = context.events
  const random = context.random
  const now = context.now
  const timeoutMessage = `no answer from mirror upstream ${policy.upstream} within ${timeoutMs}ms`
  const tooBusy: GatewayEventMap['mirror_dropped'] = Object.freeze({ route, upstream: policy.upstream, reason: 'max_in_flight' })
  const tooLarge: GatewayEventMap['mirror_dropped'] = Object.freeze({ route, upstream: policy.upstream, reason: 'body_too_large' })
  // Shared with the previous generation's layer across a reload, so copies still in flight count.
  const slots = context.keep('mirror', policy, () => ({ inFlight: 0 }))

  async function sendCopy(copy: Exchange): Promise<void> {
    const startedAt = now()
    const timer = setTimeout(abortCopy, timeoutMs, copy, timeoutMessage)
    let status: number | undefined
    let error: string | undefined
    try {
      const response = await forward(copy)
      status = response.status
      await discardBody(response.body)
    } catch (failure) {
      error = failure instanceof GatewayError ? failure.code : 'internal_error'
    } finally {
      clearTimeout(timer)
      slots.inFlight--
      copy.finish()
    }
    events.emit('mirror_done', { route, upstream: policy.upstream, status, error, durationMs: now() - startedAt })
  }

  return (next) =>
    async function mirror(exchange: Exchange): Promise<Response> {
      // A WebSocket handshake is a connection, not a request a shadow upstream could answer on its own.
      if (exchange.upgrade || !inPercent(share, random)) return next(exchange)
      if (slots.inFlight >= maxInFlight) {
        events.emit('mirror_dropped', tooBusy)
        return next(exchange)
      }
      if (!replayableAsIs(exchange.body) && !(await bufferForReplay(exchange, maxBodyBytes))) {
        events.emit('mirror_dropped', tooLarge)
        return next(exchange)
      }
      // Checked again: other requests may have taken the last slots while this body was read.
      if (slots.inFlight >= maxInFlight) {
        events.emit('mirror_dropped', tooBusy)
        return next(exchange)
      }
      slots.inFlight++
      void sendCopy(shadowOf(exchange, now()))
      return next(exchange)
    }
}

/** The copy: same request, body and header edits so far, its own signal, the shadow mark. */
function shadowOf(exchange: Exchange, startedAt: number): Exchange {
  const copy = new Exchange(exchange.request, exchange.client, exchange.requestId, exchange.path, exchange.search, startedAt)
  copy.route = exchange.route
  copy.replayableBody = exchange.replayableBody
  const edits = exchange.upstreamHeaderEdits
  copy.upstreamHeaderEdits = edits === undefined ? [SHADOW_HEADER] : [...edits, SHADOW_HEADER]
  return copy
}

function abortCopy(copy: Exchange, message: string): void {
  copy.controller.abort(new GatewayError('upstream_timeout', message))
}

/** A shadow copy of the request to another upstream, never waited on. */
export interface MirrorPolicy {
  upstream: string
  percent: number // 0–100, fractions allowed
  maxInFlight: number // copies beyond this are dropped
  maxBodyBytes: number // larger request bodies are not copied
  timeoutMs: number // the copy's own deadline
}

declare module '../../core/events.ts' {
  interface GatewayEventMap {
    mirror_dropped: { route: string; upstream: string; reason: 'max_in_flight' | 'body_too_large' }
    /** A shadow copy ended: its status, or the error code it failed with. */
    mirror_done: { route: string; upstream: string; status: number | undefined; error: string | undefined; durationMs: number }
  }
}
