/** The normalized, validated policy: every duration is milliseconds, every size bytes, every rate per second. */

export type Direction = 'ingress' | 'egress'
export type BalanceMode = 'round_robin' | 'least_request' | 'random'

export interface HostPort {
  host: string // without brackets for IPv6, e.g. "::1"
  port: number
}

export interface GatewaySettings {
  service: string
  admin: HostPort
  shutdownGraceMs: number
}

export interface ListenerConfig extends HostPort {
  name: string
  direction: Direction
}

export interface EndpointConfig {
  /** Origin plus optional base path, no trailing slash: "http://127.0.0.1:3000" or "http://h:1/base" */
  url: string
  weight: number
}

export interface UpstreamConfig {
  name: string
  endpoints: EndpointConfig[]
  balance: BalanceMode
  connectTimeoutMs: number
}

/** Policies a route may set itself or inherit from [defaults]. Later issues add keys here. */
export interface RoutePolicies {
  timeoutMs: number
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
  upstream: string
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
}
