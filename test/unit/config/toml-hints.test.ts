import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ConfigError } from '../../../src/core/config-error.ts'
import { loadConfigText } from '../../../src/config/load.ts'

const HEAD = `[gateway]
service = "orders"

[listeners.ingress]
listen = "127.0.0.1:8080"
direction = "ingress"

[upstreams.local]
endpoints = ["http://127.0.0.1:3000"]

[upstreams.canary]
endpoints = ["http://127.0.0.1:3001"]
`

/** The message `pillion check` prints for a file that must not load. */
function message(text: string): string {
  try {
    loadConfigText(text, 'pillion.toml')
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error))
    return error.message
  }
  assert.fail('the file loaded')
}

const lineOf = (text: string, header: string) => text.split('\n').indexOf(header) + 1

describe('TOML traps are explained', () => {
  it('[routes.rate_limit] with single brackets: use [[routes.rate_limit]]', () => {
    const text = `${HEAD}
[[routes]]
name = "inbound"
listener = "ingress"
path = "/*"
upstream = "local"

[routes.rate_limit]
rate = "100/s"
`
    assert.equal(
      message(text),
      `pillion.toml: routes[0].rate_limit: expected an array, got a table; [routes.rate_limit] on line ${lineOf(text, '[routes.rate_limit]')} makes one table: write [[routes.rate_limit]] (double brackets) for each entry`,
    )
    assert.doesNotThrow(() => loadConfigText(text.replace('[routes.rate_limit]', '[[routes.rate_limit]]'), 'pillion.toml'))
  })

  it('[routes.split] with single brackets: use [[routes.split]]', () => {
    const text = `${HEAD}
[[routes]]
name = "inbound"
listener = "ingress"
path = "/*"

[routes.split]
upstream = "canary"
weight = 10
`
    assert.match(message(text), /routes\[0\]\.split: expected an array, got a table; \[routes\.split\] on line \d+ makes one table: write \[\[routes\.split\]\] \(double brackets\) for each entry/)
  })

  it('the same in [defaults], and with spaces inside the brackets', () => {
    const text = `${HEAD}
[ defaults . rate_limit ]   # per client
rate = "100/s"
`
    assert.match(message(text), /defaults\.rate_limit: expected an array, got a table; \[defaults\.rate_limit\] on line \d+ makes one table: write \[\[defaults\.rate_limit\]\]/)
  })

  it('an inline table gets no bracket hint: there are no brackets to change', () => {
    const text = `${HEAD}
[[routes]]
name = "inbound"
listener = "ingress"
path = "/*"
upstream = "local"
rate_limit = { rate = "100/s" }
`
    assert.equal(message(text), 'pillion.toml: routes[0].rate_limit: expected an array, got a table')
  })

  it('[routes.retry] before the first [[routes]]: a hint about order, on the TOML syntax error', () => {
    const text = `${HEAD}
[routes.retry]
attempts = 3

[[routes]]
name = "inbound"
listener = "ingress"
path = "/*"
upstream = "local"
`
    assert.equal(
      message(text),
      `pillion.toml:${lineOf(text, '[[routes]]')}:1: TOML syntax error: cannot redefine existing key 'routes'; [routes.retry] on line ${lineOf(text, '[routes.retry]')} comes before the first [[routes]] and so made routes a table: put it after the [[routes]] header of the entry it belongs to (a [routes.retry] table extends the [[routes]] above it)`,
    )
  })

  it('[routes.inbound] and no [[routes]] at all: each route is a [[routes]] entry', () => {
    const text = `${HEAD}
[routes.inbound]
listener = "ingress"
path = "/*"
upstream = "local"
`
    assert.equal(
      message(text),
      `pillion.toml: routes: expected an array of tables, written [[routes]], got a table; [routes.inbound] on line ${lineOf(text, '[routes.inbound]')} is a table inside routes, not an entry: start each entry with [[routes]] (and name = "inbound", if that was its name), then its [routes.x] tables below it`,
    )
  })

  it('[routes] then [[routes]]: every entry is a [[routes]]', () => {
    assert.match(
      message(`${HEAD}\n[routes]\nx = 1\n[[routes]]\n`),
      /cannot redefine existing key 'routes'; \[routes\] on line \d+ made routes one table, so \[\[routes\]\] cannot add entries to it: write every entry as \[\[routes\]\]$/,
    )
  })

  it('other syntax errors and other problems are left as they were', () => {
    assert.match(message(`${HEAD}\n[gateway]\nservice = "again"\n`), /^pillion\.toml:\d+:1: TOML syntax error: cannot redefine existing key 'gateway'$/)
    assert.equal(message(`${HEAD}\n[[routes]]\nlistener = "ingress"\npath = "/*"\nupstream = "nowhere"\n`), 'pillion.toml: routes[0].upstream: no upstream named "nowhere" (defined: local, canary)')
  })
})
