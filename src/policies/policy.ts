import type * as v from 'valibot'
import type { ConfigProblem } from '../core/config-error.ts'
import type { EventBus } from '../core/events.ts'
import type { DiscoveryHost, UpstreamClient } from '../core/host.ts'
import type { PolicyStates } from '../core/policy-states.ts'
import type { Layer, Step } from '../proxy/exchange.ts'
import type { UpstreamRuntime } from '../upstream/upstream.ts'

/**
 * The policy contract. A policy is one folder under src/policies/ whose index.ts exports one
 * PolicyModule: its TOML key and schema, its cross-reference checks, and one layer factory with the
 * same signature for every policy (Envoy's filter factories: build once per route at config load,
 * return the per-request step). Whatever else a layer needs from the gateway comes through the
 * RouteContext. docs/architecture.md shows how to add one.
 */
export interface PolicyModule<Value, Field extends string = string, Parsed = Value> {
  /** The TOML key in [[routes]] and, unless routeOnly, in [defaults]: "retry". */
  key: string
  /** Its field in the normalized RoutePolicies: "retry". */
  field: Field
  /** Validates the TOML value and turns it into the normalized value; messages say what was expected. */
  schema: v.GenericSchema<unknown, Parsed>
  /** Used when neither the route nor [defaults] sets the key; undefined means "policy off". */
  builtInDefault: Value | undefined
  /** A key of the route alone, not inherited from [defaults] (split). */
  routeOnly?: true
  /** More keys of the same table the policy reads (split's sticky), with their schemas. */
  extraKeys?: Record<string, v.GenericSchema>
  /** The normalized value from the validated table, when extraKeys take part; by default the key's value. */
  pick?(table: Readonly<Record<string, unknown>>): Value | undefined
  /**
   * Where the layer sits: "route" (once per route, the default), or "upstream" (inside retries, once
   * for each upstream the route may send to, so its state is per route and upstream: breaker, fault).
   */
  scope?: 'route' | 'upstream'
  /**
   * Problems with what the raw TOML value refers to elsewhere in the file (upstream names, [redis]);
   * `table` is the raw [[routes]] entry or [defaults] table the key sits in (authz needs its jwt).
   */
  references?(value: unknown, at: string, file: FileFacts, table: Readonly<Record<string, unknown>>): ConfigProblem[]
  /** The value with its file paths made relative to the policy file (resolve does one path). */
  resolveFiles?(value: Value, resolve: (path: string) => string): Value
  /** Upstreams besides the route's that the layer may send the exchange to, each getting its own "upstream" scope layers. */
  targets?(value: Value): readonly string[]
  /**
   * Where `own` is weaker than `locked`, the value a locked base policy ([control] base) sets: empty
   * when `own` is at least as strict. Without this hook a locked value must be equal.
   */
  weakerThan?(own: Value, locked: Value): Weakening[]
  /** The layer for one route (or route and upstream); undefined when the value asks for nothing. */
  layer(value: Value, context: RouteContext): Layer | undefined
}

/** One way a policy value loosens a locked one. */
export interface Weakening {
  /** Key path inside the policy's value in TOML terms ("issuer", "allow", "[0].rate"); "" for the whole. */
  path: string
  message: string
}

/** What a policy's cross-reference check may look at: the raw, possibly invalid, document. */
export interface FileFacts {
  document: Readonly<Record<string, unknown>>
  upstreamNames: readonly string[]
}

/** The route a layer is built for, as far as policies need it. */
export interface RouteIdentity {
  name: string
  /** The route's whole-request deadline (0: none), for policies that bound their own work by it. */
  timeoutMs: number
}

/** What a policy's layer factory may use besides its own config; built once per route at config load. */
export interface RouteContext {
  route: RouteIdentity
  /** The route's upstream; for "upstream" scope layers, the one they are built for. */
  upstream: UpstreamRuntime
  upstreams: ReadonlyMap<string, UpstreamRuntime>
  events: EventBus
  /** Builds the one-try forwarding step to any upstream (for fallback = { upstream = ... }). */
  forwardTo(upstream: UpstreamRuntime): Step
  /**
   * State that should survive a config reload while the policy is unchanged (breaker windows,
   * buckets, budgets): made by create() the first time, handed back on later builds whose policy
   * config is equal. Keyed by kind and route (and upstream, for "upstream" scope layers).
   */
  keep<T>(kind: string, policy: unknown, create: () => T): T
  now(): number
  random(): number
  /** What every route of the gateway shares. */
  gateway: GatewayDeps
}

/** Files, DNS and the environment, for policies that read keys files, secrets or JWKS. */
export interface PolicyHost extends DiscoveryHost {
  env?(name: string): string | undefined
}

/**
 * What the gateway gives every route's policies. A policy that needs a gateway-wide service adds it
 * from its own folder (`declare module '../policy.ts' { interface GatewayDeps { … } }`), as the
 * rate limits add their Redis store; the gateway fills it in.
 */
export interface GatewayDeps {
  host: PolicyHost
  /**
   * The one instance for `key` (a JWKS URL, a keys file), however many routes use it, and the same
   * one across reloads while `config` is unchanged (the gateway's StateCarrier). Parts with
   * start()/stop() are started when they enter service and stopped when no config uses them.
   */
  keep<T>(key: string, config: unknown, create: () => T): T
  /** Where layers register the state the admin API, metrics and dashboard show. */
  states: PolicyStates
  /** Outgoing fetches of the policies themselves (JWKS); the global fetch by default. */
  fetch?: typeof fetch
  /**
   * The upstream client, with its connection pools, for policies that call a service on the request
   * path (ext_authz): Node's undici agents, Bun's and Deno's fetch. The gateway always gives it.
   */
  send?: UpstreamClient
}
