import type { BalanceMode, EndpointConfig } from '../config/types.ts'

export interface Endpoint {
  readonly url: string
  readonly weight: number
  /** Requests sent and not yet answered; least_request reads it. */
  active: number
}

export interface Balancer {
  readonly endpoints: readonly Endpoint[]
  pick(): Endpoint
}

export function createBalancer(mode: BalanceMode, configs: EndpointConfig[], random = Math.random): Balancer {
  const endpoints: Endpoint[] = configs.map((c) => ({ url: c.url, weight: c.weight, active: 0 }))
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
function roundRobin(endpoints: Endpoint[]): Balancer {
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

function weightedRandom(endpoints: Endpoint[], random: () => number): () => Endpoint {
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
function leastRequest(endpoints: Endpoint[], random: () => number): Balancer {
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
