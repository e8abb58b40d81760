import * as v from 'valibot'
import { expectedGot } from '../../core/config-error.ts'
import { arrayOf, table } from '../../core/schema-kit.ts'
import { GatewayError } from '../../core/errors.ts'
import type { Exchange, Layer, Step } from '../../proxy/exchange.ts'
import { CidrSet, parseCidr, parseIp, type Cidr } from '../../core/cidr.ts'
import type { PolicyModule, RouteContext } from '../policy.ts'
import { ipWeakerThan } from './strictness.ts'
import type { IpPolicy } from './types.ts'

const CIDR_EXAMPLE = 'an address or CIDR range like "10.0.0.0/8", "192.168.1.7" or "fd00::/8"'

/** A list of CIDRs, checked here so a typo is a load error; kept as written for /config. */
export function cidrList() {
  return arrayOf(
    v.pipe(
      v.string((issue) => expectedGot(CIDR_EXAMPLE, issue.input)),
      v.rawCheck(({ dataset, addIssue }) => {
        if (!dataset.typed) return
        const parsed = parseCidr(dataset.value)
        if ('problem' in parsed) addIssue({ message: `${expectedGot(CIDR_EXAMPLE, dataset.value)}: ${parsed.problem}` })
      }),
    ),
  )
}

export function toCidrSet(list: readonly string[]): CidrSet {
  return new CidrSet(list.map((text) => parseCidr(text) as Cidr))
}

/** [routes.ip]: allow and deny lists of IPv4 and IPv6 ranges, matched against the client address. */
export const ipPolicy: PolicyModule<IpPolicy, 'ip'> = {
  key: 'ip',
  field: 'ip',
  schema: v.pipe(
    table({ allow: v.optional(cidrList(), []), deny: v.optional(cidrList(), []) }),
    v.check(({ allow, deny }) => allow.length + deny.length > 0, 'expected allow or deny (or both) with at least one range'),
    v.transform((t): IpPolicy => ({ allow: t.allow, deny: t.deny })),
  ),
  builtInDefault: undefined,
  weakerThan: ipWeakerThan,
  layer: (policy, context) => ipLayer(policy, context),
}

/**
 * Deny wins; then, if an allow list is given, the address must be on it. The address is the one the
 * listener resolved (X-Forwarded-For only from trusted_proxies). One that cannot be parsed (the
 * runtime gave none) is refused either way: a deny list must not be passed by having no address.
 *
 * @example ipLayer({ allow: ['10.0.0.0/8'], deny: ['10.0.66.0/24'] }, context)
 */
export function ipLayer(policy: IpPolicy, context: RouteContext): Layer {
  const allow = policy.allow.length > 0 ? toCidrSet(policy.allow) : undefined
  const deny = policy.deny.length > 0 ? toCidrSet(policy.deny) : undefined
  const route = context.route.name
  const events = context.events
  return (next: Step) =>
    function ip(exchange: Exchange): Promise<Response> {
      const address = exchange.client.remoteAddress
      const bytes = parseIp(address)
      const denied = bytes === undefined || deny?.has(bytes) === true
      if (denied || (allow !== undefined && !allow.has(bytes))) {
        const reason = denied ? 'denied' : 'not_allowed'
        events.emit('ip_reject', { route, address, reason })
        return Promise.reject(new GatewayError('forbidden', `client address ${address} is ${denied ? 'denied' : 'not allowed'} on this route`))
      }
      return next(exchange)
    }
}

declare module '../../core/events.ts' {
  interface GatewayEventMap {
    ip_reject: { route: string; address: string; reason: 'denied' | 'not_allowed' }
  }
}

export type { IpPolicy }
