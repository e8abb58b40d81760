import type { ListenerProtocol } from '../core/host.ts'
import type { AuditConfig } from '../observability/audit.ts'
import type { ObservabilityConfig } from '../observability/config.ts'
import type { RoutePolicies } from '../policies/index.ts'
import type { RedisSettings } from '../policies/rate-limit/config.ts'
import type { SplitPolicy } from '../policies/split/index.ts'
import type { UpstreamConfig } from '../upstream/config.ts'
import type { PathRewrite } from '../proxy/rewrite.ts'
import type { HostPort } from '../core/address.ts'
import type { ControlConfig } from './control.ts'
import type { SecretUses } from './secrets.ts'

/** The normalized, validated policy file: every duration is milliseconds, every size bytes, every rate per second. */

export type Direction = 'ingress' | 'egress'

export interface GatewaySettings {
  service: string
  admin: HostPort
  shutdownGraceMs: number
  /** Longest a client may take from its connection's accept (or a later request's first byte) to the end of the request head; 0: no limit; absent: the runtime's default. */
  headerTimeoutMs?: number
  /** CIDRs whose X-Forwarded-For is believed; absent: none (the TCP peer is the client). */
  trustedProxies?: string[]
  /** Environment variable holding the admin bearer token; required when admin is not on loopback. */
  adminTokenEnv?: string
  /** The probes listener: GET /healthz, /readyz and /metrics only, without a token; absent: none. */
  probes?: HostPort
}

export interface ListenerConfig extends HostPort {
  name: string
  direction: Direction
  tls?: ListenerTls
  /** This listener's own header deadline, over [gateway] header_timeout; 0: none. */
  headerTimeoutMs?: number
  /** Set when the listener speaks more than HTTP/1.1 (absent: ["http1"]). */
  protocols?: ListenerProtocol[]
}

export interface RouteConfig {
  index: number
  name: string
  listener: string
  host?: string // lower-case, without port
  path: string
  methods?: string[] // upper-case
  headers?: Array<[name: string, value: string]> // name lower-case
  stripPrefix?: string
  /** How the path sent upstream differs, after strip_prefix. */
  rewrite?: PathRewrite
  /** The route's upstream; for a split route, the first split entry (the split picks per request). */
  upstream: string
  split?: SplitPolicy
  policies: RoutePolicies
}

export interface Config {
  /** The file the config came from, as given. */
  source: string
  gateway: GatewaySettings
  listeners: Record<string, ListenerConfig>
  upstreams: Record<string, UpstreamConfig>
  defaults: Partial<RoutePolicies>
  routes: RouteConfig[]
  /** Absent when the file has no [observability]: every default (access log on stdout, no trace export). */
  observability?: ObservabilityConfig
  audit?: AuditConfig
  control?: ControlConfig
  redis?: RedisSettings
  /** Set when strings came from `${env:…}`/`${file:…}`: their key paths and the values put in, which GET /config blanks. */
  secrets?: SecretUses
}

/** Listener TLS: PEM files, resolved against the policy file's directory. */
export interface ListenerTls {
  cert: string
  key: string
  /** Verify client certificates against this CA (mTLS); clients without one are refused. */
  clientCa?: string
  /** With clientCa: the certificate must also carry one of these SANs, "DNS:…" or "URI:…" (src/listener/client-names.ts). */
  allowedSans?: string[]
}
