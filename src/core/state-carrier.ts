/**
 * Carries the stateful parts of a gateway (upstreams, breakers, buckets, budgets) from one config
 * generation to the next, so a reload keeps what it did not change. A part is kept when its key and
 * its config are the same as before; anything else is made anew, and parts the new config no longer
 * uses are handed back for disposal once the new generation is in service.
 */
export class StateCarrier {
  #current = new Map<string, Entry>()
  /** A new carrier is collecting its first generation at once. */
  #next: Map<string, Entry> | undefined = new Map()

  /** Starts collecting the parts of a new generation. */
  begin(): void {
    this.#next = new Map()
  }

  keep<T>(key: string, config: unknown, create: () => T): T {
    const next = this.#next
    if (next === undefined) throw new Error('StateCarrier.keep outside begin/commit')
    const already = next.get(key)
    if (already !== undefined) return already.value as T
    const fingerprint = JSON.stringify(config) ?? ''
    const prior = this.#current.get(key)
    const entry = prior !== undefined && prior.fingerprint === fingerprint ? prior : { fingerprint, value: create(), fresh: true }
    next.set(key, entry)
    return entry.value as T
  }

  /** The new generation is in service: returns what it made anew and what it no longer uses, by key. */
  commit(): { created: Part[]; dropped: Part[] } {
    const next = this.#next ?? new Map<string, Entry>()
    const created: Part[] = []
    for (const [key, entry] of next) {
      if (entry.fresh) created.push([key, entry.value])
      entry.fresh = false
    }
    const dropped: Part[] = []
    for (const [key, entry] of this.#current) if (next.get(key) !== entry) dropped.push([key, entry.value])
    this.#current = next
    this.#next = undefined
    return { created, dropped }
  }

  /** The new generation was abandoned: returns what it had made anew, for disposal. */
  abort(): Part[] {
    const made = [...(this.#next ?? [])].filter(([, entry]) => entry.fresh).map(([key, entry]): Part => [key, entry.value])
    this.#next = undefined
    return made
  }
}

export type Part = [key: string, value: unknown]

interface Entry {
  fingerprint: string
  value: unknown
  fresh: boolean
}
