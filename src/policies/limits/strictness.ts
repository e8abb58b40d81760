import type { Weakening } from '../policy.ts'
import { atMost, deadlineAtMost, within } from '../shared/strictness.ts'
import type { LimitsPolicy } from './types.ts'

/** Every size no higher, the body deadline no longer (0 is none), and no method the lock does not allow. */
export function limitsWeakerThan(own: LimitsPolicy, locked: LimitsPolicy): Weakening[] {
  return [
    ...atMost('max_body', own.maxBodyBytes, locked.maxBodyBytes, ' bytes'),
    ...atMost('max_header_bytes', own.maxHeaderBytes, locked.maxHeaderBytes, ' bytes'),
    ...atMost('max_url_length', own.maxUrlLength, locked.maxUrlLength, ' bytes'),
    ...within('methods', own.methods, locked.methods),
    ...deadlineAtMost('client_timeout', own.clientTimeoutMs, locked.clientTimeoutMs),
  ]
}
