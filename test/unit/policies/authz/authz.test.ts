import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { loadConfigText } from '../../../../src/config/load.ts'
import { GatewayError } from '../../../../src/core/errors.ts'
import { authzLayer, type AuthzPolicy } from '../../../../src/policies/authz/index.ts'
import { claimValues } from '../../../../src/policies/authz/requirements.ts'
import { ONE_ROUTE, problemLines } from '../../fakes/policy-text.ts'
import { echoStep, exchangeFor, fakeContext, record } from '../../fakes/security-fakes.ts'

/** A route that verifies tokens and keys, so its authz may ask for claims and consumers. */
const AUTHENTICATED = `${ONE_ROUTE}jwt = { secret_env = "JWT_SECRET" }\napi_key = { keys_file = "consumers.json" }\n`

/** The normalized policy of an [routes.authz] table, as the loader makes it. */
function policyOf(table: string): AuthzPolicy {
  return loadConfigText(`${AUTHENTICATED}\n[routes.authz]\n${table}\n`, 'pillion.toml').routes[0]!.policies.authz!
}

interface Caller {
  method?: string
  path?: string
  claims?: Record<string, unknown>
  consumer?: string
  bearer?: boolean
}

function setup(table: string) {
  const context = fakeContext('orders')
  const refused = record(context.events, 'authz_refused')
  const step = authzLayer(policyOf(table), context)(echoStep())
  const send = async ({ method = 'GET', path = '/orders/1', claims, consumer, bearer = claims !== undefined }: Caller) => {
    const exchange = exchangeFor(`http://gw${path}`, { method, headers: bearer ? { authorization: 'Bearer t.o.k' } : {} })
    exchange.claims = claims
    exchange.consumer = consumer
    try {
      await step(exchange)
      return { status: 200, exchange, challenge: undefined }
    } catch (error) {
      assert.ok(error instanceof GatewayError)
      assert.equal(error.code, 'forbidden')
      return { status: error.status, exchange, challenge: error.headers?.['www-authenticate'] }
    }
  }
  return { send, refused }
}

describe('authz config', () => {
  test('the shorthand of the issue: claims and consumers on the table apply to every request', () => {
    const policy = policyOf('claims = { scope = ["orders:write"], "realm_access.roles" = ["admin"] }\nconsumers = ["billing", "reports"]')
    assert.deepEqual(policy, {
      dryRun: false,
      require: { claims: { scope: { anyOf: ['orders:write'] }, 'realm_access.roles': { anyOf: ['admin'] } }, consumers: ['billing', 'reports'] },
      rules: [],
      unmatched: 'deny',
    })
  })

  test('rules are named by their place unless given a name; methods upper-case', () => {
    const policy = policyOf('[[routes.authz.rules]]\nmethods = ["get"]\npaths = ["/orders/*"]\nclaims = { sub = "alice", n = { all_of = [1, true] } }\n[[routes.authz.rules]]\nname = "nobody-deletes"\nmethods = ["DELETE"]\ndeny = true')
    assert.deepEqual(policy.rules, [
      { name: 'rules[0]', methods: ['GET'], paths: ['/orders/*'], require: { claims: { sub: { anyOf: ['alice'] }, n: { allOf: ['1', 'true'] } } }, deny: false },
      { name: 'nobody-deletes', methods: ['DELETE'], deny: true },
    ])
  })

  test('mistakes name their key path and what was expected', () => {
    const at = (table: string) => problemLines(`${AUTHENTICATED}\n[routes.authz]\n${table}\n`)
    assert.deepEqual(at('mode = "shadow"'), [
      'routes[0].authz.mode: expected one of "enforce", "dry_run", got "shadow"',
    ])
    assert.deepEqual(at('unmatched = "deny"'), ['routes[0].authz: expected claims, consumers or rules'])
    assert.deepEqual(at('claims = { scope = [] }'), ['routes[0].authz.claims.scope: expected at least one value'])
    assert.deepEqual(at('claims = { scope = {} }'), ['routes[0].authz.claims.scope: expected any_of, all_of or both'])
    assert.deepEqual(at('claims = { scope = { one_of = ["a"] } }'), ['routes[0].authz.claims.scope: expected a claim value like "orders:write", a list of them, or { any_of = [...], all_of = [...] }, got a table'])
    assert.deepEqual(at('claims = { "a..b" = "x" }'), ['routes[0].authz.claims."a..b": expected a claim name or dotted path like "realm_access.roles", got "a..b"'])
    assert.deepEqual(at('consumers = ["bill ing"]'), ['routes[0].authz.consumers[0]: expected a name of letters, digits, "_" and "-", starting with a letter or digit, got "bill ing"'])
    assert.deepEqual(at('[[routes.authz.rules]]\npaths = ["orders"]'), ['routes[0].authz.rules[0].paths[0]: expected a path like "/orders", "/api/*" or "/users/:id", starting with "/", got "orders"'])
    assert.deepEqual(at('[[routes.authz.rules]]\nmethods = ["GET"]\ndeny = true\nconsumers = ["a"]'), [
      'routes[0].authz.rules[0]: a deny rule refuses whatever it matches: give it methods and paths, not claims or consumers',
    ])
    assert.deepEqual(at('[[routes.authz.rules]]\nname = "a"\n[[routes.authz.rules]]\nname = "a"'), ['routes[0].authz.rules: expected each rule to have its own name'])
    assert.deepEqual(at('[[routes.authz.rules]]\nname = "route"'), ['routes[0].authz.rules[0].name: "route" is a name the policy uses itself; pick another'])
    assert.deepEqual(at('claims = { scope = "x" }\nroles = ["admin"]'), [
      'routes[0].authz.roles: unknown key "roles" (allowed: mode, claims, consumers, rules, unmatched)',
    ])
  })

  test('claims need jwt on the route or in [defaults], consumers need api_key: otherwise nothing could pass', () => {
    assert.deepEqual(problemLines(`${ONE_ROUTE}\n[routes.authz]\nclaims = { scope = "a" }\n[[routes.authz.rules]]\nconsumers = ["billing"]\n`), [
      'routes[0].authz: asks for claims, but the route has no jwt (nor [defaults]): no request would carry a verified claim',
      'routes[0].authz: asks for consumers, but the route has no api_key (nor [defaults]): no request would have a consumer',
    ])
    const inherited = `[defaults]\njwt = { secret_env = "JWT_SECRET" }\n${ONE_ROUTE}authz = { claims = { scope = "a" } }\n`
    assert.equal(loadConfigText(inherited, 'pillion.toml').routes[0]!.policies.authz!.require!.claims!.scope!.anyOf![0], 'a')
    assert.deepEqual(policyOf('[[routes.authz.rules]]\nmethods = ["DELETE"]\ndeny = true').rules.length, 1, 'rules on method and path alone need neither')

    // An authz in [defaults] is checked for each route that takes it: one with its own jwt passes.
    const fromDefaults = `[defaults]\nauthz = { claims = { scope = "a" } }\n${ONE_ROUTE}\n[[routes]]\nname = "tokens"\nlistener = "ingress"\npath = "/t/*"\nupstream = "local"\njwt = { secret_env = "JWT_SECRET" }\n`
    assert.deepEqual(problemLines(fromDefaults), [
      'routes[0]: inherits authz from [defaults], which asks for claims, but the route has no jwt (nor [defaults]): no request would carry a verified claim',
    ])
  })
})

describe('claims as sets', () => {
  test('scope and scp strings are space-separated sets; other strings are one value; lists hold scalars', () => {
    assert.deepEqual(claimValues('orders:read  orders:write', true), ['orders:read', 'orders:write'])
    assert.deepEqual(claimValues('John Smith', false), ['John Smith'])
    assert.deepEqual(claimValues(['admin', 7, true, { x: 1 }, null], false), ['admin', '7', 'true'])
    assert.deepEqual(claimValues({ roles: ['admin'] }, false), [])
    assert.deepEqual(claimValues(undefined, true), [])
  })
})

describe('authz layer', () => {
  test('every claim key must hold; a list is any-of; the scope string is a set; nested claims by dotted path', async () => {
    const { send } = setup('claims = { scope = ["orders:write"], "realm_access.roles" = ["admin", "clerk"] }')
    const good = { scope: 'orders:read orders:write', realm_access: { roles: ['clerk'] } }
    assert.equal((await send({ claims: good })).status, 200)
    assert.equal((await send({ claims: { ...good, scope: 'orders:read' } })).status, 403)
    assert.equal((await send({ claims: { ...good, realm_access: { roles: ['viewer'] } } })).status, 403)
    assert.equal((await send({ claims: { scope: 'orders:write' } })).status, 403, 'a missing claim never holds')
    assert.equal((await send({})).status, 403, 'no verified token at all')
  })

  test('all_of needs every value, any_of one of them; together both', async () => {
    const { send } = setup('claims = { groups = { all_of = ["staff", "eu"], any_of = ["billing", "support"] } }')
    assert.equal((await send({ claims: { groups: ['staff', 'eu', 'support'] } })).status, 200)
    assert.equal((await send({ claims: { groups: ['staff', 'support'] } })).status, 403)
    assert.equal((await send({ claims: { groups: ['staff', 'eu'] } })).status, 403)
  })

  test('a claim whose own name has dots is found by that name first', async () => {
    const { send } = setup('claims = { "https://example.com/roles" = "admin" }')
    assert.equal((await send({ claims: { 'https://example.com/roles': ['admin'] } })).status, 200)
  })

  test('consumers: the API-key consumer must be one of them', async () => {
    const { send } = setup('consumers = ["billing", "reports"]')
    assert.equal((await send({ consumer: 'reports' })).status, 200)
    assert.equal((await send({ consumer: 'marketing' })).status, 403)
    assert.equal((await send({})).status, 403)
  })

  test('403 with an insufficient_scope challenge naming the scope, only when a bearer token was used', async () => {
    const { send } = setup('claims = { scope = { all_of = ["orders:write"] } }\nconsumers = ["billing"]')
    const withToken = await send({ claims: { scope: 'orders:read' }, consumer: 'billing' })
    assert.equal(withToken.status, 403)
    assert.equal(withToken.challenge, 'Bearer error="insufficient_scope", scope="orders:write"')
    const withKey = await send({ consumer: 'marketing', bearer: false })
    assert.equal(withKey.status, 403)
    assert.equal(withKey.challenge, undefined)
  })

  test('the first rule whose methods and paths match decides; a rule without requirements is public; unmatched is refused', async () => {
    const { send, refused } = setup(`
[[routes.authz.rules]]
name = "health"
paths = ["/orders/health"]
[[routes.authz.rules]]
name = "no-deletes"
methods = ["DELETE"]
deny = true
[[routes.authz.rules]]
name = "read"
methods = ["GET", "HEAD"]
paths = ["/orders/*"]
claims = { scope = "orders:read" }
[[routes.authz.rules]]
name = "write"
methods = ["POST", "PUT"]
paths = ["/orders/:id", "/orders"]
claims = { scope = "orders:write" }
consumers = ["billing"]`)
    const reader = { scope: 'orders:read' }
    const writer = { scope: 'orders:write' }
    assert.equal((await send({ path: '/orders/health' })).status, 200, 'public')
    assert.equal((await send({ method: 'DELETE', path: '/orders/health', claims: writer })).status, 200, 'health came first')
    assert.equal((await send({ claims: reader })).status, 200)
    assert.equal((await send({ method: 'POST', claims: reader, consumer: 'billing' })).status, 403)
    assert.equal((await send({ method: 'POST', claims: writer, consumer: 'billing' })).status, 200)
    assert.equal((await send({ method: 'POST', claims: writer })).status, 403, 'both keys of the rule must hold')
    assert.equal((await send({ method: 'DELETE', claims: writer })).status, 403)
    assert.equal((await send({ method: 'PATCH', claims: writer })).status, 403, 'no rule matches')
    assert.equal((await send({ method: 'POST', path: '/orders/1/items', claims: writer, consumer: 'billing' })).status, 403, '":id" is one segment')
    assert.deepEqual(
      refused.map((e) => e.rule),
      ['write', 'write', 'no-deletes', 'unmatched', 'unmatched'],
    )
  })

  test('route-wide requirements come first; unmatched = "allow" lets requests no rule matches through', async () => {
    const { send, refused } = setup('claims = { tenant = "acme" }\nunmatched = "allow"\n[[routes.authz.rules]]\nname = "admin"\npaths = ["/orders/admin/*"]\nclaims = { roles = "admin" }')
    assert.equal((await send({ claims: { tenant: 'acme' } })).status, 200)
    assert.equal((await send({ claims: { tenant: 'other' } })).status, 403)
    assert.equal((await send({ path: '/orders/admin/x', claims: { tenant: 'acme' } })).status, 403)
    assert.equal((await send({ path: '/orders/admin/x', claims: { tenant: 'acme', roles: ['admin'] } })).status, 200)
    assert.deepEqual(refused.map((e) => e.rule), ['route', 'admin'])
  })

  test('dry run: what would be refused goes on, counted and marked for the access log', async () => {
    const { send, refused } = setup('mode = "dry_run"\nclaims = { scope = "orders:write" }')
    const reply = await send({ claims: { scope: 'orders:read' } })
    assert.equal(reply.status, 200)
    assert.equal(reply.exchange.authz, 'dry_run:route')
    assert.deepEqual(refused, [{ route: 'orders', rule: 'route', dryRun: true }])
    const allowed = await send({ claims: { scope: 'orders:write' } })
    assert.equal(allowed.exchange.authz, undefined)
  })

  test('a refusal is marked on the exchange with the rule that refused', async () => {
    const { send } = setup('[[routes.authz.rules]]\nname = "write"\nmethods = ["POST"]\nclaims = { scope = "orders:write" }')
    assert.equal((await send({ method: 'POST', claims: { scope: 'x' } })).exchange.authz, 'write')
  })
})
