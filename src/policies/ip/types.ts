/** CIDRs as written; parsed into bytes when the route's chain is built. */
export interface IpPolicy {
  allow: string[]
  deny: string[]
}
