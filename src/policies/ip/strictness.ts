import { cidrWithin, parseCidr, type Cidr } from '../../core/cidr.ts'
import type { Weakening } from '../policy.ts'
import type { IpPolicy } from './types.ts'

const cidr = (text: string) => parseCidr(text) as Cidr

function inside(range: string, ranges: readonly string[]): boolean {
  return ranges.some((outer) => cidrWithin(cidr(range), cidr(outer)))
}

/**
 * Stricter means no address gets in that the lock keeps out: with a locked allow list, every range
 * the service allows lies within one locked range (an allow list made longer, or dropped, is
 * weaker); every locked deny range lies within one the service denies.
 */
export function ipWeakerThan(own: IpPolicy, locked: IpPolicy): Weakening[] {
  const weakenings: Weakening[] = []
  if (locked.allow.length > 0) {
    if (own.allow.length === 0) weakenings.push({ path: 'allow', message: `expected ranges within the locked allow list ${JSON.stringify(locked.allow)}, got none (every address)` })
    const outside = own.allow.filter((range) => !inside(range, locked.allow))
    if (outside.length > 0) weakenings.push({ path: 'allow', message: `${JSON.stringify(outside)} reaches outside the locked allow list ${JSON.stringify(locked.allow)}` })
  }
  const undenied = locked.deny.filter((range) => !inside(range, own.deny))
  if (undenied.length > 0) weakenings.push({ path: 'deny', message: `must still deny ${JSON.stringify(undenied)} (locked deny list ${JSON.stringify(locked.deny)})` })
  return weakenings
}
