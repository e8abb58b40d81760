/**
 * Snapshots of policy state by kind, as the admin API, metrics and the dashboard read them. A policy
 * adds its kind from inside its own folder (`declare module '../../core/policy-states.ts'`, as Hono's
 * middleware extend ContextVariableMap), so this file never names a policy.
 */
export interface PolicyStateMap {}

export type PolicyStateKind = keyof PolicyStateMap

/** One config generation's registry: each layer registers its snapshot function once, at config load. */
export class PolicyStates {
  readonly #byKind = new Map<string, Map<string, () => unknown>>()

  register<Kind extends PolicyStateKind>(kind: Kind, key: string, snapshot: () => PolicyStateMap[Kind]): void {
    let registered = this.#byKind.get(kind)
    if (registered === undefined) this.#byKind.set(kind, (registered = new Map()))
    registered.set(key, snapshot)
  }

  /** The snapshot functions of one kind, by key (route, or route/upstream), in registration order. */
  of<Kind extends PolicyStateKind>(kind: Kind): ReadonlyMap<string, () => PolicyStateMap[Kind]> {
    return (this.#byKind.get(kind) ?? EMPTY) as ReadonlyMap<string, () => PolicyStateMap[Kind]>
  }
}

const EMPTY: ReadonlyMap<string, () => unknown> = new Map()
