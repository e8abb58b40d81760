import type { Weakening } from '../policy.ts'
import { equal, keptOff } from '../shared/strictness.ts'
import type { ApiKeyPolicy } from './types.ts'

/**
 * The same keys file (which keys are valid), the same key header, the same consumer header (the
 * upstream trusts it), and the key kept from the upstream unless the lock forwards it.
 */
export function apiKeyWeakerThan(own: ApiKeyPolicy, locked: ApiKeyPolicy): Weakening[] {
  return [
    ...equal('keys_file', own.keysFile, locked.keysFile),
    ...equal('header', own.header, locked.header),
    ...equal('consumer_header', own.consumerHeader, locked.consumerHeader),
    ...keptOff('forward_key', own.forwardKey, locked.forwardKey),
  ]
}
