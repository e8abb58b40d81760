import type { BalanceMode } from './config.ts'

export interface Endpoint {
  readonly url: string
  readonly weight: number
  /** Requests sent and not yet answered; least_request reads it. */
  active: number
}

export interface Balancer<E extends Endpoint = Endpoint> {
  readonly endpoints: readonly E[]
  pick(): E
}

/**
 * A balancer over the given endpoints, which it keeps (not copies): their `active` counts stay the
 * ones the forwarder updates. Built once per change of the set; the list must not be empty.
 */
export function createBalancer<E extends Endpoint>(mode: BalanceMode, endpoints: readonly E[], random = Math.random): Balancer<E> {
  if (endpoints.length === 1) {
    const only = endpoints[0]!
    return { endpoints, pick: () => only }
  }
  switch (mode) {
    case 'round_robin':
      return roundRobin(endpoints)
    case 'random':
      return { endpoints, pick: weightedRandom(endpoints, random) }
    case 'least_request':
      return leastRequest(endpoints, random)
  }
}

/** nginx's smooth weighted round robin: weights 5,1,1 give a,a,b,a,c,a,a rather than a burst of five a's. */
function roundRobin<E extends Endpoint>(endpoints: readonly E[]): Balancer<E> {
  const current = new Float64Array(endpoints.length)
  let total = 0
  for (const e of endpoints) total += e.weight
  return {
    endpoints,
    pick() {
      let best = 0
      for (let i = 0; i < endpoints.length; i++) {
        current[i]! += endpoints[i]!.weight
        if (current[i]! > current[best]!) best = i
      }
      current[best]! -= total
      return endpoints[best]!
    },
  }
}

function weightedRandom<E extends Endpoint>(endpoints: readonly E[], random: () => number): () => E {
  const cumulative: number[] = []
  let total = 0
  for (const e of endpoints) cumulative.push((total += e.weight))
  return () => {
    const r = random() * total
    let i = 0
    while (cumulative[i]! <= r) i++
    return endpoints[i]!
  }
}

/** Power of two choices (Envoy's least_request default): two weighted random picks, the less busy wins. */
function leastRequest<E extends Endpoint>(endpoints: readonly E[], random: () => number): Balancer<E> {
  const draw = weightedRandom(endpoints, random)
  return {
    endpoints,
    pick() {
      const a = draw()
      let b = draw()
      if (b === a) b = draw()
      return a.active / a.weight <= b.active / b.weight ? a : b
    },
  }
}
