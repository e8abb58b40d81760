import type { Weakening } from '../policy.ts'
import { keptOff, optionalAtMost, within } from '../shared/strictness.ts'
import type { CorsPolicy } from './types.ts'

/** `["*"]` and an empty header list (reflect what is asked) mean "any". */
const anyIf = (list: string[], any: boolean): string[] | undefined => (any ? undefined : list)

/** No origin, method or header the lock does not allow, no credentials unless locked on, no longer preflight cache. */
export function corsWeakerThan(own: CorsPolicy, locked: CorsPolicy): Weakening[] {
  return [
    ...within('origins', anyIf(own.origins, own.origins.includes('*')), anyIf(locked.origins, locked.origins.includes('*'))),
    ...within('methods', own.methods, locked.methods),
    ...within('headers', anyIf(own.headers, own.headers.length === 0), anyIf(locked.headers, locked.headers.length === 0)),
    ...within('expose_headers', own.exposeHeaders, locked.exposeHeaders),
    ...keptOff('credentials', own.credentials, locked.credentials),
    ...optionalAtMost('max_age', own.maxAgeSeconds, locked.maxAgeSeconds, 's'),
  ]
}
