import assert from 'node:assert/strict'
import { test } from 'node:test'
// @ts-expect-error: a plain .mjs script without types
import { roundOrder } from '../../scripts/bench-lib.mjs'

const predecessors = (order: string[]) => new Map(order.slice(1).map((name, i) => [name, order[i]]))

test('each round of the bench measures every configuration once', () => {
  const configs = ['direct', 'nginx', 'caddy', 'naive bun', 'binary bare', 'binary chain']
  for (let round = 0; round < 5; round++) assert.deepEqual([...roundOrder(configs, round)].sort(), [...configs].sort())
})

test('from one round to the next, a configuration follows a different one', () => {
  const configs = ['direct', 'nginx', 'caddy', 'naive bun', 'binary bare', 'binary chain']
  const first = predecessors(roundOrder(configs, 0))
  const second = predecessors(roundOrder(configs, 1))
  for (const [name, before] of second) assert.notEqual(first.get(name), before, `${name} follows ${before} in both rounds`)
})
