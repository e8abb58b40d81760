import type { Weakening } from '../policy.ts'
import { atMost, deadlineAtMost, keptOff, optionalAtMost } from '../shared/strictness.ts'
import type { WebSocketPolicy } from './types.ts'

/** Kept off if locked off; no more connections, no larger messages, no longer idle time. */
export function websocketWeakerThan(own: WebSocketPolicy, locked: WebSocketPolicy): Weakening[] {
  if (!locked.enabled) return keptOff('enabled', own.enabled, locked.enabled)
  return [
    ...optionalAtMost('max_connections', own.maxConnections, locked.maxConnections),
    ...atMost('max_message', own.maxMessageBytes, locked.maxMessageBytes, ' bytes'),
    ...deadlineAtMost('idle_timeout', own.idleTimeoutMs, locked.idleTimeoutMs),
  ]
}
