import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, test } from 'node:test'
import { ConfigError, type ConfigProblem } from '../../../src/core/config-error.ts'
import { loadConfigText } from '../../../src/config/load.ts'
import type { Config } from '../../../src/config/types.ts'
import { builtInPolicies, policyRegistry } from '../../../src/policies/index.ts'
import { DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MAX_MESSAGE_BYTES } from '../../../src/policies/websocket/index.ts'
import { DEFAULT_OUTLIER } from '../../../src/upstream/config.ts'

/** WebSockets are carried on every route unless a file says otherwise. */
const WEBSOCKET = { enabled: true, idleTimeoutMs: DEFAULT_IDLE_TIMEOUT_MS, maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES }
import { IN_AND_U } from '../fakes/policy-text.ts'

function fixture(name: string): string {
  return readFileSync(new URL(`../../fixtures/config/${name}`, import.meta.url), 'utf8')
}

const BASE = `
[gateway]
service = "orders"

[listeners.ingress]
listen = "0.0.0.0:8080"
direction = "ingress"

[listeners.egress]
listen = "127.0.0.1:15001"
direction = "egress"

[upstreams.local]
endpoints = ["http://127.0.0.1:3000"]
`

function route(keys: string): string {
  return `\n[[routes]]\n${keys}\n`
}

const VALID_ROUTE = route('listener = "ingress"\npath = "/*"\nupstream = "local"')

function loadError(text: string, source = 'pillion.toml'): ConfigError {
  try {
    loadConfigText(text, source)
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`)
    return error
  }
  assert.fail('expected the config to be rejected')
}

function problemsOf(text: string): ConfigProblem[] {
  return loadError(text).problems
}

/** The only problem of a config that is valid but for one thing. */
function onlyProblem(text: string): ConfigProblem {
  const problems = problemsOf(text)
  assert.equal(problems.length, 1, `expected one problem, got:\n${problems.map((p) => `${p.path}: ${p.message}`).join('\n')}`)
  return problems[0]!
}

describe('valid configs', () => {
  test('a full config normalizes every key', () => {
    const config = loadConfigText(fixture('full.toml'), 'full.toml')
    const expected: Config = {
      source: 'full.toml',
      gateway: { service: 'orders', admin: { host: '::1', port: 9902 }, shutdownGraceMs: 30_000, headerTimeoutMs: 20_000 },
      listeners: {
        ingress: { name: 'ingress', host: '0.0.0.0', port: 8080, direction: 'ingress' },
        egress: { name: 'egress', host: '127.0.0.1', port: 15001, direction: 'egress' },
      },
      upstreams: {
        local: {
          name: 'local',
          endpoints: [{ url: 'http://127.0.0.1:3000', weight: 1 }],
          balance: 'round_robin',
          connectTimeoutMs: 1000,
          retryConnectFailure: true,
          outlier: DEFAULT_OUTLIER,
        },
        payments: {
          name: 'payments',
          endpoints: [
            { url: 'https://payments.internal:8443/v1', weight: 3 },
            { url: 'http://10.0.0.7', weight: 1 },
          ],
          balance: 'least_request',
          connectTimeoutMs: 250,
          retryConnectFailure: true,
          outlier: DEFAULT_OUTLIER,
        },
      },
      defaults: { timeoutMs: 5000 },
      routes: [
        {
          index: 0,
          name: 'payments',
          listener: 'egress',
          host: 'payments',
          path: '/payments/*',
          methods: ['GET', 'POST'],
          headers: [['x-tenant', 'acme']],
          stripPrefix: '/payments',
          upstream: 'payments',
          policies: { timeoutMs: 2000, websocket: WEBSOCKET },
        },
        {
          index: 1,
          name: 'route-1',
          listener: 'ingress',
          path: '/users/:id',
          upstream: 'local',
          policies: { timeoutMs: 5000, websocket: WEBSOCKET },
        },
      ],
    }
    assert.deepEqual(config, expected)
  })

  test('a minimal config gets every default', () => {
    const config = loadConfigText(fixture('minimal.toml'), 'minimal.toml')
    assert.deepEqual(config.gateway, { service: 'orders', admin: { host: '127.0.0.1', port: 9901 }, shutdownGraceMs: 10_000 })
    assert.deepEqual(config.upstreams.app, {
      name: 'app',
      endpoints: [{ url: 'http://127.0.0.1:3000', weight: 1 }],
      balance: 'round_robin',
      connectTimeoutMs: 1000,
      retryConnectFailure: true,
      outlier: DEFAULT_OUTLIER,
    })
    assert.deepEqual(config.defaults, {})
    assert.deepEqual(config.routes, [
      { index: 0, name: 'route-0', listener: 'ingress', path: '/*', upstream: 'app', policies: { timeoutMs: 15_000, websocket: WEBSOCKET } },
    ])
  })

  test('route policies: built-in, overlaid by [defaults], overlaid by the route', () => {
    const withDefaults = `${BASE}\n[defaults]\ntimeout = "3s"\n`
    const config = loadConfigText(
      withDefaults + VALID_ROUTE + route('listener = "ingress"\npath = "/slow"\nupstream = "local"\ntimeout = "1m"'),
      'x.toml',
    )
    assert.deepEqual(config.defaults, { timeoutMs: 3000 })
    assert.deepEqual(
      config.routes.map((r) => r.policies.timeoutMs),
      [3000, 60_000],
    )
    assert.equal(loadConfigText(BASE + VALID_ROUTE, 'x.toml').routes[0]!.policies.timeoutMs, 15_000)
  })

  test('the policy registry supplies the built-in defaults', () => {
    assert.deepEqual(builtInPolicies(), { timeoutMs: 15_000, websocket: WEBSOCKET })
    assert.equal(policyRegistry.timeoutMs.key, 'timeout')
  })

  test('no routes is allowed', () => {
    assert.deepEqual(loadConfigText(BASE, 'x.toml').routes, [])
  })

  test('an IPv6 listener on an ephemeral port', () => {
    const text = '[gateway]\nservice = "s"\n[listeners.v6]\nlisten = "[::1]:0"\ndirection = "ingress"\n'
    assert.deepEqual(loadConfigText(text, 'x.toml').listeners.v6, { name: 'v6', host: '::1', port: 0, direction: 'ingress' })
  })

  test('several listeners may all use port 0', () => {
    const text = `${BASE}\n[listeners.a]\nlisten = "127.0.0.1:0"\ndirection = "ingress"\n[listeners.b]\nlisten = "127.0.0.1:0"\ndirection = "ingress"\n`
    assert.deepEqual(Object.keys(loadConfigText(text, 'x.toml').listeners), ['ingress', 'egress', 'a', 'b'])
  })

  test('route matching keys are normalized', () => {
    const text = BASE + route(`listener = "ingress"\npath = "/x"\nupstream = "local"\nmethods = ["get", "Patch"]\nhost = "[::1]"\nheaders = { "X-Tenant" = "Acme" }`)
    const [normalized] = loadConfigText(text, 'x.toml').routes
    assert.deepEqual(normalized?.methods, ['GET', 'PATCH'])
    assert.equal(normalized?.host, '::1')
    assert.deepEqual(normalized?.headers, [['x-tenant', 'Acme']])
  })
})

describe('reported problems', () => {
  test('the error lists one line per problem, with file and key path', () => {
    const error = loadError(fixture('three-problems.toml'), 'three-problems.toml')
    assert.equal(error.source, 'three-problems.toml')
    const unknownKey = (message: string) => message.replace(/\(allowed: [^)]*\)/, '(allowed: …)')
    assert.deepEqual(
      error.problems.map((problem) => ({ ...problem, message: unknownKey(problem.message) })),
      [
        { path: 'upstreams.app.connect_timeout', message: 'expected a duration like "250ms", "2s" or "1m", got "fast"' },
        { path: 'routes[1].retries', message: 'unknown key "retries" (allowed: …)' },
        { path: 'routes[1].upstream', message: 'no upstream named "payments" (defined: app)' },
      ],
    )
    assert.match(error.problems[1]!.message, /\(allowed: name, listener, path, .*upstream, timeout, retry/)
    assert.equal(
      unknownKey(error.message),
      [
        'three-problems.toml: upstreams.app.connect_timeout: expected a duration like "250ms", "2s" or "1m", got "fast"',
        'three-problems.toml: routes[1].retries: unknown key "retries" (allowed: …)',
        'three-problems.toml: routes[1].upstream: no upstream named "payments" (defined: app)',
      ].join('\n'),
    )
  })

  test('a TOML syntax error names file, line and column', () => {
    const error = loadError(fixture('syntax-error.toml'), 'policies/orders.toml')
    assert.equal(error.message, 'policies/orders.toml:2:18: TOML syntax error: unterminated string')
    assert.deepEqual(error.problems, [{ path: '', message: 'TOML syntax error: unterminated string', line: 2, column: 18 }])
  })

  test('a TOML syntax error says what was expected', () => {
    assert.equal(loadError('[gateway]\nservice = \n').message, 'pillion.toml:2:11: TOML syntax error: unexpected end of line, expected a value')
    assert.equal(loadError('[gateway\n').message, 'pillion.toml:1:9: TOML syntax error: unexpected end of line, expected "]"')
  })

  test('a key defined twice is a syntax error with its position', () => {
    assert.equal(
      loadError('[gateway]\nservice = "a"\nservice = "b"\n').message,
      "pillion.toml:3:1: TOML syntax error: cannot redefine existing key 'gateway.service'",
    )
  })

  test('unknown keys at the top level, in a route and in an upstream', () => {
    const topLevel = onlyProblem(`retries = 3\n${BASE}`)
    assert.equal(topLevel.path, 'retries')
    assert.match(topLevel.message, /^unknown key "retries" \(allowed: gateway, listeners, upstreams, defaults, routes, .*control.*\)$/)
    assert.deepEqual(onlyProblem(BASE + route('listener = "ingress"\npath = "/"\nupstream = "local"\nretries = 2')).path, 'routes[0].retries')
    assert.deepEqual(onlyProblem(BASE.replace('endpoints =', 'retry = 1\nendpoints =')), {
      path: 'upstreams.local.retry',
      message: 'unknown key "retry" (allowed: endpoints, balance, weights, protocol, connect_timeout, ca, cert, key, server_name, outlier, retry_connect_failure, health_check, discovery)',
    })
    assert.equal(onlyProblem(`${BASE}\n[defaults]\nretries = 1\n`).path, 'defaults.retries')
  })

  test('required keys', () => {
    assert.deepEqual(problemsOf('[listeners.a]\nlisten = "127.0.0.1:0"\ndirection = "ingress"\n'), [
      { path: 'gateway', message: 'required key missing' },
    ])
    assert.deepEqual(problemsOf(BASE + route('path = "/"')), [
      { path: 'routes[0].listener', message: 'required key missing' },
      { path: 'routes[0].upstream', message: 'required key missing' },
    ])
  })

  test('at least one listener', () => {
    assert.deepEqual(problemsOf('[gateway]\nservice = "s"\n'), [{ path: 'listeners', message: 'required key missing' }])
    assert.deepEqual(problemsOf('[gateway]\nservice = "s"\n[listeners]\n'), [
      { path: 'listeners', message: 'expected at least one listener, got none' },
    ])
  })

  test('gateway values', () => {
    assert.deepEqual(onlyProblem(BASE.replace('service = "orders"', 'service = ""')), {
      path: 'gateway.service',
      message: 'expected a non-empty string',
    })
    assert.deepEqual(onlyProblem(BASE.replace('service = "orders"', 'service = "o"\nshutdown_grace = 10')), {
      path: 'gateway.shutdown_grace',
      message: 'expected a duration like "250ms", "2s" or "1m", got 10 (a plain number has no unit: write "10s" or "10ms")',
    })
    assert.deepEqual(onlyProblem(BASE.replace('service = "orders"', 'service = "o"\nadmin = "::1:9901"')), {
      path: 'gateway.admin',
      message:
        'expected "host:port" with a port from 0 to 65535, like "0.0.0.0:8080" or "[::1]:8080", got "::1:9901" (put IPv6 addresses in brackets)',
    })
  })

  test('listener values and names', () => {
    assert.deepEqual(onlyProblem(BASE.replace('direction = "egress"', 'direction = "both"')), {
      path: 'listeners.egress.direction',
      message: 'expected one of "ingress", "egress", got "both"',
    })
    assert.equal(onlyProblem(BASE.replace('127.0.0.1:15001', '127.0.0.1:65536')).path, 'listeners.egress.listen')
    assert.equal(onlyProblem(BASE.replace('127.0.0.1:15001', '127.0.0.1')).path, 'listeners.egress.listen')
    assert.deepEqual(onlyProblem(BASE.replace('[listeners.egress]', '[listeners."-egress"]')), {
      path: 'listeners.-egress',
      message: 'expected a name of letters, digits, "_" and "-", starting with a letter or digit, got "-egress"',
    })
    assert.equal(onlyProblem(BASE.replace('[listeners.egress]', '[listeners."side car"]')).path, 'listeners."side car"')
  })

  test('two listeners on one address', () => {
    assert.deepEqual(onlyProblem(BASE.replace('127.0.0.1:15001', '0.0.0.0:8080')), {
      path: 'listeners.egress.listen',
      message: 'address "0.0.0.0:8080" is already used by listeners.ingress.listen',
    })
    assert.deepEqual(onlyProblem(BASE.replace('127.0.0.1:15001', '127.0.0.1:9901')), {
      path: 'listeners.egress.listen',
      message: 'address "127.0.0.1:9901" is already used by gateway.admin',
    })
  })

  test('gateway.probes: an address of its own, none by default', () => {
    const probes = (address: string) => BASE.replace('service = "orders"', `service = "orders"\nprobes = "${address}"`)
    assert.equal(loadConfigText(BASE, 'pillion.toml').gateway.probes, undefined)
    assert.deepEqual(loadConfigText(probes('0.0.0.0:9902'), 'pillion.toml').gateway.probes, { host: '0.0.0.0', port: 9902 })
    // No token needed: what it serves is read-only and reveals nothing.
    assert.doesNotThrow(() => loadConfigText(probes('[::]:9902'), 'pillion.toml'))
    assert.deepEqual(onlyProblem(probes('9902')), {
      path: 'gateway.probes',
      message: 'expected "host:port" with a port from 0 to 65535, like "0.0.0.0:8080" or "[::1]:8080", got "9902"',
    })
    assert.deepEqual(onlyProblem(probes('127.0.0.1:9901')), {
      path: 'gateway.probes',
      message: 'address "127.0.0.1:9901" is already used by gateway.admin',
    })
    assert.deepEqual(onlyProblem(probes('0.0.0.0:8080')), {
      path: 'listeners.ingress.listen',
      message: 'address "0.0.0.0:8080" is already used by gateway.probes',
    })
    assert.doesNotThrow(() => loadConfigText(probes('127.0.0.1:0').replace('service = "orders"', 'service = "orders"\nadmin = "127.0.0.1:0"'), 'pillion.toml'))
  })

  test('upstream values', () => {
    const upstream = (keys: string) => `${BASE}\n[upstreams.payments]\n${keys}\n`
    assert.deepEqual(onlyProblem(upstream('endpoints = ["http://a:1", "http://b:1"]\nweights = [1]')), {
      path: 'upstreams.payments.weights',
      message: 'expected 2 weights, one per endpoint, got 1',
    })
    assert.deepEqual(onlyProblem(upstream('endpoints = ["http://a:1"]\nweights = [0]')), {
      path: 'upstreams.payments.weights[0]',
      message: 'expected a positive integer, got 0',
    })
    assert.deepEqual(onlyProblem(upstream('endpoints = []')), {
      path: 'upstreams.payments.endpoints',
      message: 'expected at least one endpoint, got none',
    })
    assert.deepEqual(onlyProblem(upstream('endpoints = ["ftp://a"]')), {
      path: 'upstreams.payments.endpoints[0]',
      message: 'expected an http:// or https:// URL like "http://127.0.0.1:3000", got "ftp://a"',
    })
    assert.deepEqual(onlyProblem(upstream('endpoints = ["http://a/?x=1"]')), {
      path: 'upstreams.payments.endpoints[0]',
      message: 'expected an endpoint URL without query or fragment, got "http://a/?x=1"',
    })
    assert.deepEqual(onlyProblem(upstream('endpoints = ["http://user:secret@a"]')), {
      path: 'upstreams.payments.endpoints[0]',
      message: 'expected an endpoint URL without user name or password',
    })
    assert.deepEqual(onlyProblem(upstream('endpoints = ["http://a"]\nbalance = "rr"')), {
      path: 'upstreams.payments.balance',
      message: 'expected one of "round_robin", "least_request", "random", got "rr"',
    })
  })

  test('route references name what is defined', () => {
    assert.deepEqual(onlyProblem(BASE + route('listener = "x"\npath = "/"\nupstream = "local"')), {
      path: 'routes[0].listener',
      message: 'no listener named "x" (defined: ingress, egress)',
    })
    assert.deepEqual(onlyProblem(BASE + VALID_ROUTE + route('listener = "ingress"\npath = "/"\nupstream = "nope"')), {
      path: 'routes[1].upstream',
      message: 'no upstream named "nope" (defined: local)',
    })
  })

  test('duplicate route names, explicit or default', () => {
    const named = (name: string) => route(`name = "${name}"\nlistener = "ingress"\npath = "/"\nupstream = "local"`)
    assert.deepEqual(onlyProblem(BASE + named('api') + VALID_ROUTE + named('api')), {
      path: 'routes[2].name',
      message: 'duplicate route name "api" (also routes[0])',
    })
    assert.equal(onlyProblem(BASE + VALID_ROUTE + named('route-0')).path, 'routes[1].name')
  })

  test('route values', () => {
    const withRoute = (keys: string) => onlyProblem(BASE + route(`listener = "ingress"\nupstream = "local"\n${keys}`))
    assert.deepEqual(withRoute('path = "api/*"'), {
      path: 'routes[0].path',
      message: 'expected a path like "/orders", "/api/*" or "/users/:id", starting with "/", got "api/*"',
    })
    assert.equal(withRoute('path = "/a*/b"').path, 'routes[0].path')
    assert.equal(withRoute('path = "/users/:1"').path, 'routes[0].path')
    assert.deepEqual(withRoute('path = "/"\nhost = "payments:8080"'), {
      path: 'routes[0].host',
      message: 'expected a host name like "api.example.com" or "*.example.com" without a port (routes match any port), got "payments:8080"',
    })
    assert.deepEqual(withRoute('path = "/"\nhost = "api.*.com"'), {
      path: 'routes[0].host',
      message: 'expected a host name like "api.example.com" or "*.example.com", with "*" only as the whole first label, got "api.*.com"',
    })
    assert.equal(withRoute('path = "/"\nhost = "*"').path, 'routes[0].host')
    assert.equal(withRoute('path = "/"\nhost = "https://payments"').path, 'routes[0].host')
    assert.equal(withRoute('path = "/"\nmethods = ["GET", "BAD METHOD"]').path, 'routes[0].methods[1]')
    assert.deepEqual(withRoute('path = "/"\nstrip_prefix = "payments"'), {
      path: 'routes[0].strip_prefix',
      message: 'expected a literal path prefix like "/payments", got "payments"',
    })
    assert.deepEqual(withRoute('path = "/api/*"\nstrip_prefix = "/payments"'), {
      path: 'routes[0].strip_prefix',
      message: '"/payments" can never be stripped: it is not a prefix of path "/api/*"',
    })
    assert.deepEqual(withRoute('path = "/"\nheaders = { "x-tenant" = 1 }'), {
      path: 'routes[0].headers.x-tenant',
      message: 'expected a string, got 1',
    })
    assert.deepEqual(withRoute('path = "/"\ntimeout = "soon"'), {
      path: 'routes[0].timeout',
      message: 'expected a duration like "250ms", "2s" or "1m", got "soon"',
    })
  })

  test('routes must be an array of tables', () => {
    assert.deepEqual(onlyProblem(`${BASE}\n[routes]\npath = "/"\n`), {
      path: 'routes',
      message: 'expected an array of tables, written [[routes]], got a table',
    })
  })

  test('problems from validation and cross-references come together', () => {
    const text = BASE.replace('direction = "egress"', 'direction = "both"') + route('listener = "nope"\npath = "x"\nupstream = "gone"')
    assert.deepEqual(
      problemsOf(text).map((problem) => problem.path),
      ['listeners.egress.direction', 'routes[0].path', 'routes[0].listener', 'routes[0].upstream'],
    )
  })
})

describe('fallback upstreams', () => {
  const base = IN_AND_U
  test('must exist, in [defaults] as in a route', () => {
    const text = `${base}[defaults]\nfallback = { upstream = "ghost" }\n[[routes]]\nlistener = "in"\npath = "/*"\nupstream = "u"\nfallback = { upstream = "phantom" }\n`
    const error = loadError(text, 'p.toml')
    assert.deepEqual(
      error.problems.map((p) => p.path),
      // In file order: [defaults] before [[routes]], as every policy's reference checks report.
      ['defaults.fallback.upstream', 'routes[0].fallback.upstream'],
    )
  })
})
