import assert from 'node:assert/strict'
import { ConfigError, type ConfigProblem } from '../../../src/core/config-error.ts'
import { loadConfigText } from '../../../src/config/load.ts'

/** A minimal policy with one route, routes[0], for tests to append a policy table to. */
export const ONE_ROUTE = `
[gateway]
service = "orders"

[listeners.ingress]
listen = "127.0.0.1:8080"
direction = "ingress"

[upstreams.local]
endpoints = ["http://127.0.0.1:3000"]

[[routes]]
listener = "ingress"
path = "/*"
upstream = "local"
`

/** A gateway with listener "in" and upstream "u" and no routes, for tests that write their own. */
export const IN_AND_U = `
[gateway]
service = "t"
[listeners.in]
listen = "127.0.0.1:0"
direction = "ingress"
[upstreams.u]
endpoints = ["http://127.0.0.1:1"]
`

/** The problems a policy text is rejected with; fails the test if it loads. */
export function rejection(text: string): ConfigProblem[] {
  try {
    loadConfigText(text, 'pillion.toml')
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error))
    return error.problems
  }
  return assert.fail('expected the config to be rejected')
}

/** The same, as "path: message" lines. */
export function problemLines(text: string): string[] {
  return rejection(text).map((problem) => `${problem.path}: ${problem.message}`)
}
