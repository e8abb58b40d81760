import * as v from 'valibot'
import { boolean, integer, table } from '../../core/schema-kit.ts'
import { GatewayError } from '../../core/errors.ts'
import { duration, size } from '../../core/units.ts'
import type { WebSocketClose } from '../../core/websocket.ts'
import type { Exchange, Layer, Step } from '../../proxy/exchange.ts'
import type { PolicyModule, RouteContext } from '../policy.ts'
import { websocketWeakerThan } from './strictness.ts'
import type { WebSocketPolicy } from './types.ts'

/** Envoy's stream_idle_timeout: an established stream with no traffic either way for this long is closed. */
export const DEFAULT_IDLE_TIMEOUT_MS = 300_000
/** uWebSockets' and so Bun's maxPayloadLength: a message larger than this closes the connection with 1009. */
export const DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024

/**
 * [routes.websocket]: WebSocket upgrades are carried on every route unless `enabled = false` (as
 * Caddy and Traefik do), with an idle timeout, a message size limit and a cap on open connections.
 */
export const websocketPolicy: PolicyModule<WebSocketPolicy, 'websocket'> = {
  key: 'websocket',
  field: 'websocket',
  schema: v.pipe(
    table({
      enabled: v.optional(boolean(), true),
      idle_timeout: v.optional(duration(), '5m'),
      max_message: v.optional(size(), DEFAULT_MAX_MESSAGE_BYTES),
      max_connections: v.optional(integer(1)),
    }),
    v.transform((t): WebSocketPolicy => {
      const policy: WebSocketPolicy = { enabled: t.enabled, idleTimeoutMs: t.idle_timeout, maxMessageBytes: t.max_message! }
      if (t.max_connections !== undefined) policy.maxConnections = t.max_connections
      return policy
    }),
  ),
  builtInDefault: { enabled: true, idleTimeoutMs: DEFAULT_IDLE_TIMEOUT_MS, maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES },
  weakerThan: websocketWeakerThan,
  layer: (policy, context) => websocketLayer(policy, context),
}

/** The open connections of one route, kept across reloads while its policy is unchanged. */
class Connections {
  open = 0
  constructor(readonly limit: number) {}
}

/**
 * Admits a WebSocket handshake or refuses it (403 websocket_disabled, 503 too_many_connections),
 * and for an admitted one puts its terms on the exchange so the forwarder opens the upstream side.
 * The route's slot is held from the 101 until the connection closes. Other requests pass untouched.
 *
 * @example websocketLayer({ enabled: true, idleTimeoutMs: 300_000, maxMessageBytes: 1_048_576, maxConnections: 1000 }, context)
 */
export function websocketLayer(policy: WebSocketPolicy, context: RouteContext): Layer {
  const route = context.route.name
  const events = context.events
  const now = context.now
  const connections = context.keep('websocket', policy, () => new Connections(policy.maxConnections ?? Number.POSITIVE_INFINITY))
  context.gateway.states.register('websocket', route, () => ({ route, open: connections.open }))
  const disabled = `WebSocket upgrades are turned off for route ${route} ([routes.websocket] enabled = false)`
  const full = `route ${route} already carries its max_connections of ${policy.maxConnections} WebSockets`
  /** A handshake's admission, its slot and its terms; everything else goes straight on (below). */
  async function admit(exchange: Exchange, next: Step): Promise<Response> {
    if (!policy.enabled) throw new GatewayError('websocket_disabled', disabled)
    if (connections.open >= connections.limit) throw new GatewayError('too_many_connections', full)
    // Counted from the handshake on, so handshakes in flight cannot overshoot the limit together.
    connections.open++
    let released = false
    const release = (): boolean => {
      if (released) return false
      released = true
      connections.open--
      return true
    }
    exchange.websocket = {
      idleTimeoutMs: policy.idleTimeoutMs,
      maxMessageBytes: policy.maxMessageBytes,
      closed(close) {
        if (release()) events.emit('websocket_closed', { route, requestId: exchange.requestId, durationMs: now() - exchange.startedAt, ...close })
      },
    }
    let response: Response
    try {
      response = await next(exchange)
    } catch (error) {
      release()
      throw error
    }
    // A refused upstream handshake comes back as an ordinary answer: no connection to hold.
    if (exchange.session === undefined) release()
    else events.emit('websocket_opened', { route })
    return response
  }

  // Not async: on every route, so an ordinary request passes without a promise of its own.
  return (next: Step) =>
    function websocket(exchange: Exchange): Promise<Response> {
      return exchange.upgrade ? admit(exchange, next) : next(exchange)
    }
}

declare module '../../core/events.ts' {
  interface GatewayEventMap {
    websocket_opened: { route: string }
    /** A bridged WebSocket ended: who closed it, with what code, and what passed through it. */
    websocket_closed: { route: string; requestId: string; durationMs: number } & WebSocketClose
  }
}

declare module '../../core/policy-states.ts' {
  interface PolicyStateMap {
    /** Keyed by route: the WebSockets it carries now. */
    websocket: { route: string; open: number }
  }
}

export type { WebSocketPolicy }
