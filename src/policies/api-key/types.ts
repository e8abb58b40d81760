export interface ApiKeyPolicy {
  header: string // lower-case
  /** Resolved against the policy file's directory. */
  keysFile: string
  /** Upstream header that carries the consumer's name. */
  consumerHeader: string
  /** Keep the key header on the way upstream; off by default. */
  forwardKey: boolean
}
