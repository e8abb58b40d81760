import type { DiscoveryHost } from '../../core/host.ts'

/** Files and environment for the security policies: keys files, HMAC secrets. */
export interface SecurityHost extends DiscoveryHost {
  env?(name: string): string | undefined
}

/** What the security policies need besides their config; built once per config load. */
export interface SecurityDeps {
  host: SecurityHost
  /**
   * The one instance for `key` (a JWKS URL, a keys file), however many routes use it, and the same
   * one across reloads while `config` is unchanged (the gateway's StateCarrier). Parts with
   * start()/stop() are started when they enter service and stopped when no config uses them.
   */
  keep<T>(key: string, config: unknown, create: () => T): T
  /** JWKS fetches; the global fetch by default. */
  fetch?: typeof fetch
  /** Monotonic milliseconds; performance.now by default. */
  now?: () => number
}
