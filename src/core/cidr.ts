/**
 * IP addresses and CIDR ranges as bytes: 4 for IPv4, 16 for IPv6. An IPv4-mapped IPv6 address
 * (::ffff:127.0.0.1, which Node reports for IPv4 clients of a "::" listener) is its IPv4 address,
 * so IPv4 rules match it. Parsing happens once per address; rules are parsed at load.
 */

export type IpBytes = Uint8Array

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/
const HEXTET = /^[0-9a-f]{1,4}$/i

function parseIpv4(text: string): IpBytes | undefined {
  const match = IPV4.exec(text)
  if (match === null) return undefined
  return Uint8Array.of(Number(match[1]), Number(match[2]), Number(match[3]), Number(match[4]))
}

function parseIpv6(text: string): IpBytes | undefined {
  let rest = text
  const zone = rest.indexOf('%')
  if (zone !== -1) rest = rest.slice(0, zone)
  // An embedded IPv4 tail ("::ffff:1.2.3.4") is the last two hextets written in dotted form.
  const lastColon = rest.lastIndexOf(':')
  if (lastColon !== -1 && rest.includes('.', lastColon)) {
    const v4 = parseIpv4(rest.slice(lastColon + 1))
    if (v4 === undefined) return undefined
    const high = ((v4[0]! << 8) | v4[1]!).toString(16)
    const low = ((v4[2]! << 8) | v4[3]!).toString(16)
    rest = `${rest.slice(0, lastColon + 1)}${high}:${low}`
  }
  const double = rest.indexOf('::')
  if (double !== -1 && rest.indexOf('::', double + 1) !== -1) return undefined
  const split = (part: string): string[] | undefined => {
    if (part === '') return []
    const hextets = part.split(':')
    return hextets.every((h) => HEXTET.test(h)) ? hextets : undefined
  }
  const head = split(double === -1 ? rest : rest.slice(0, double))
  const tail = double === -1 ? [] : split(rest.slice(double + 2))
  if (head === undefined || tail === undefined) return undefined
  if (double === -1 ? head.length !== 8 : head.length + tail.length > 7) return undefined
  const bytes = new Uint8Array(16)
  head.forEach((h, i) => writeHextet(bytes, i, h))
  tail.forEach((h, i) => writeHextet(bytes, 8 - tail.length + i, h))
  return bytes
}

function writeHextet(bytes: IpBytes, index: number, hextet: string): void {
  const value = Number.parseInt(hextet, 16)
  bytes[index * 2] = value >> 8
  bytes[index * 2 + 1] = value & 0xff
}

const MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]

function isMapped(bytes: IpBytes): boolean {
  if (bytes.length !== 16) return false
  for (let i = 0; i < 12; i++) if (bytes[i] !== MAPPED_PREFIX[i]) return false
  return true
}

/** "10.1.2.3", "::1", "fe80::1%eth0", "::ffff:10.1.2.3" (→ 4 bytes); undefined if not an address. */
export function parseIp(text: string): IpBytes | undefined {
  const bytes = text.includes(':') ? parseIpv6(text) : parseIpv4(text)
  if (bytes === undefined) return undefined
  return isMapped(bytes) ? bytes.subarray(12) : bytes
}

/** The canonical text: dotted IPv4, or RFC 5952 IPv6 (lower case, longest zero run as "::"). */
export function formatIp(bytes: IpBytes): string {
  if (bytes.length === 4) return bytes.join('.')
  const hextets: number[] = []
  for (let i = 0; i < 16; i += 2) hextets.push((bytes[i]! << 8) | bytes[i + 1]!)
  let bestStart = -1
  let bestLength = 1
  for (let i = 0; i < 8; ) {
    if (hextets[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && hextets[j] === 0) j++
    if (j - i > bestLength) {
      bestStart = i
      bestLength = j - i
    }
    i = j
  }
  const text = hextets.map((h) => h.toString(16))
  if (bestStart === -1) return text.join(':')
  return `${text.slice(0, bestStart).join(':')}::${text.slice(bestStart + bestLength).join(':')}`
}

/** A range: the network's bytes and how many leading bits must match. */
export interface Cidr {
  bytes: IpBytes
  prefix: number
}

/**
 * "10.0.0.0/8", "2001:db8::/32", or a single address. An IPv4-mapped IPv6 range of /96 or longer
 * becomes the IPv4 range. A range with host bits set ("10.0.0.1/8") is refused: it is usually a typo.
 */
export function parseCidr(text: string): Cidr | { problem: string } {
  const slash = text.indexOf('/')
  const addressText = slash === -1 ? text : text.slice(0, slash)
  const prefixText = slash === -1 ? undefined : text.slice(slash + 1)
  const full = addressText.includes(':') ? parseIpv6(addressText) : parseIpv4(addressText)
  if (full === undefined || addressText.includes('%')) return { problem: 'not an IP address' }
  const bits = full.length * 8
  if (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText)) return { problem: 'the prefix length after "/" must be a number' }
  let prefix = prefixText === undefined ? bits : Number(prefixText)
  if (prefix > bits) return { problem: `the prefix length must be at most ${bits}` }
  let bytes = full
  if (isMapped(full) && prefix >= 96) {
    bytes = full.subarray(12)
    prefix -= 96
  }
  for (let bit = prefix; bit < bytes.length * 8; bit++) {
    if ((bytes[bit >> 3]! >> (7 - (bit & 7))) & 1) {
      const network = maskTo(bytes, prefix)
      return { problem: `host bits are set; the network is ${formatIp(network)}/${prefix}` }
    }
  }
  return { bytes, prefix }
}

function maskTo(bytes: IpBytes, prefix: number): IpBytes {
  const masked = new Uint8Array(bytes)
  for (let bit = prefix; bit < masked.length * 8; bit++) masked[bit >> 3]! &= ~(1 << (7 - (bit & 7)))
  return masked
}

export function cidrContains(cidr: Cidr, address: IpBytes): boolean {
  if (cidr.bytes.length !== address.length) return false
  const whole = cidr.prefix >> 3
  for (let i = 0; i < whole; i++) if (cidr.bytes[i] !== address[i]) return false
  const rest = cidr.prefix & 7
  if (rest === 0) return true
  const mask = (0xff << (8 - rest)) & 0xff
  return (cidr.bytes[whole]! & mask) === (address[whole]! & mask)
}

/** A list of ranges, checked in order; small lists, so a scan beats a trie. */
export class CidrSet {
  readonly #cidrs: readonly Cidr[]
  constructor(cidrs: readonly Cidr[]) {
    this.#cidrs = cidrs
  }

  get size(): number {
    return this.#cidrs.length
  }

  has(address: IpBytes): boolean {
    for (const cidr of this.#cidrs) if (cidrContains(cidr, address)) return true
    return false
  }
}

/** Whether every address of `inner` is also in `outer`: "10.1.0.0/16" is within "10.0.0.0/8". */
export function cidrWithin(inner: Cidr, outer: Cidr): boolean {
  return inner.bytes.length === outer.bytes.length && inner.prefix >= outer.prefix && cidrContains(outer, inner.bytes)
}
