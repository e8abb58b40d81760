import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { describe, test } from 'node:test'
import { loadBaseText } from '../../../src/config/base-file.ts'
import { loadConfigText } from '../../../src/config/load.ts'
import { pinBase } from '../../../src/config/pin-base.ts'
import { baseLocks } from '../../../src/config/locks.ts'
import type { Config } from '../../../src/config/types.ts'
import { ConfigError } from '../../../src/core/config-error.ts'
import { IN_AND_U } from '../fakes/policy-text.ts'

const base = (text: string) => loadBaseText(text, 'base.toml', {}, (path) => path)

/** A service file with one route "api" (or the tables given), checked against a base. */
function service(routeKeys = '', rest = ''): string {
  return `${IN_AND_U}\n${rest}\n[[routes]]\nname = "api"\nlistener = "in"\npath = "/*"\nupstream = "u"\n${routeKeys}\n`
}

function load(baseText: string, serviceText: string): Config {
  return loadConfigText(serviceText, 'service.toml', {}, base(baseText))
}

/** Every loosening as "path: message", the base's own path cut to what follows "base.toml: ". */
function loosenings(baseText: string, serviceText: string): string[] {
  try {
    load(baseText, serviceText)
    return []
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error))
    assert.equal(error.source, 'service.toml')
    return error.problems.map((problem) => `${problem.path}: ${problem.message}`)
  }
}

describe('a locked base', () => {
  test('a key the service leaves out is the base’s; one it sets must be at least as strict', () => {
    const locks = '[defaults]\nlimits = { max_body = "1mb" }\n'
    assert.equal(load(locks, service()).routes[0]!.policies.limits!.maxBodyBytes, 1 << 20)
    assert.equal(load(locks, service('limits = { max_body = "512kb" }')).routes[0]!.policies.limits!.maxBodyBytes, 512 << 10)
    assert.deepEqual(loosenings(locks, service('limits = { max_body = "10mb" }')), [
      'routes[0].limits.max_body: loosens the locked base (base.toml: defaults.limits.max_body): expected at most 1048576 bytes, got 10485760 bytes',
    ])
  })

  test('a loosening in the service’s [defaults] is named there, once for all its routes', () => {
    const text = service('', '[defaults]\nlimits = { max_url_length = "16kb" }').replace(/$/, '\n[[routes]]\nname = "b"\nlistener = "in"\npath = "/b"\nupstream = "u"\n')
    assert.deepEqual(loosenings('[defaults]\nlimits = {}\n', text), [
      'defaults.limits.max_url_length: loosens the locked base (base.toml: defaults.limits.max_url_length): expected at most 8192 bytes, got 16384 bytes',
    ])
  })

  test('limits: sizes, methods and the body deadline', () => {
    const locks = '[defaults]\nlimits = { methods = ["GET", "POST"], client_timeout = "10s" }\n'
    assert.deepEqual(loosenings(locks, service('limits = { methods = ["GET"], client_timeout = "5s" }')), [])
    assert.deepEqual(loosenings(locks, service('limits = { methods = ["GET", "DELETE"], client_timeout = "0s" }')), [
      'routes[0].limits.methods: loosens the locked base (base.toml: defaults.limits.methods): ["DELETE"] is not in the locked list ["GET", "POST"]',
      'routes[0].limits.client_timeout: loosens the locked base (base.toml: defaults.limits.client_timeout): expected at most 10000ms, got none (0)',
    ])
    assert.match(loosenings(locks, service('limits = { client_timeout = "5s" }'))[0]!, /methods: .*expected a list within \["GET", "POST"\], got none/)
  })

  test('ip: an allow list made longer or dropped, a deny range no longer denied', () => {
    const locks = '[defaults]\nip = { allow = ["10.0.0.0/8"], deny = ["10.66.0.0/16"] }\n'
    assert.deepEqual(loosenings(locks, service('ip = { allow = ["10.1.0.0/16"], deny = ["10.0.0.0/9"] }')), [])
    assert.deepEqual(loosenings(locks, service('ip = { allow = ["10.0.0.0/8", "192.168.0.0/16"], deny = ["10.66.0.0/16"] }')), [
      'routes[0].ip.allow: loosens the locked base (base.toml: defaults.ip.allow): ["192.168.0.0/16"] reaches outside the locked allow list ["10.0.0.0/8"]',
    ])
    const dropped = loosenings(locks, service('ip = { deny = ["10.66.1.0/24"] }'))
    assert.equal(dropped.length, 2)
    assert.match(dropped[0]!, /^routes\[0\]\.ip\.allow: .*got none \(every address\)/)
    assert.match(dropped[1]!, /^routes\[0\]\.ip\.deny: .*must still deny \["10\.66\.0\.0\/16"\]/)
  })

  test('jwt: the same keys, no other issuer, audience or algorithm, no claim check or claim header dropped', () => {
    const locks = `[defaults]\njwt = { jwks = "https://idp.internal/jwks.json", issuer = "https://idp.internal", audience = ["orders", "billing"], algorithms = ["RS256", "ES256"], required_claims = ["sub"], forward_claims = { "x-user" = "sub" } }\n`
    const own = (keys: string) => service(`jwt = { jwks = "https://idp.internal/jwks.json", issuer = "https://idp.internal", audience = "orders", algorithms = ["RS256"], required_claims = ["sub", "tenant"], forward_claims = { "x-user" = "sub", "x-tenant" = "tenant" }${keys} }`)
    assert.deepEqual(loosenings(locks, own('')), [])
    assert.deepEqual(loosenings(locks, own('').replace('issuer = "https://idp.internal"', 'issuer = "https://other"').replace('audience = "orders"', 'audience = "admin"')), [
      'routes[0].jwt.issuer: loosens the locked base (base.toml: defaults.jwt.issuer): ["https://other"] is not in the locked list ["https://idp.internal"]',
      'routes[0].jwt.audience: loosens the locked base (base.toml: defaults.jwt.audience): ["admin"] is not in the locked list ["orders", "billing"]',
    ])
    const looser = service('jwt = { jwks = "https://evil.example/jwks.json", algorithms = ["RS256", "PS256"], require_expiration = false, clock_skew = "5m" }')
    assert.deepEqual(
      loosenings(locks, looser).map((line) => line.split(':')[0]),
      [
        'routes[0].jwt.jwks',
        'routes[0].jwt.issuer',
        'routes[0].jwt.audience',
        'routes[0].jwt.algorithms',
        'routes[0].jwt.required_claims',
        'routes[0].jwt.require_expiration',
        'routes[0].jwt.clock_skew',
        'routes[0].jwt.forward_claims',
      ],
    )
    assert.match(loosenings('[defaults]\njwt = { jwks = "https://idp/jwks.json" }\n', looser.replace('evil.example', 'idp')).join('\n'), /require_expiration: .*is locked to true, got false\n.*clock_skew: .*expected at most 60000ms, got 300000ms/)
  })

  test('rate_limit: every locked limit needs one of the service’s at least as strict', () => {
    const locks = '[defaults]\nrate_limit = [{ name = "per-client", rate = "100/s" }, { name = "daily", quota = { limit = 10000, per = "1d" }, key = "route", store = "redis" }]\n'
    const redis = '[redis]\nurl = "redis://127.0.0.1:6379"'
    const strict = 'rate_limit = [{ name = "mine", rate = "50/s", burst = 20 }, { name = "daily", quota = { limit = 5000, per = "2d" }, key = "route", store = "redis" }, { name = "extra", rate = "1/s", key = "header:x-tenant" }]'
    assert.deepEqual(loosenings(locks, service(strict, redis)), [])
    const looser = 'rate_limit = [{ name = "per-client", rate = "200/s", mode = "dry_run" }, { name = "daily", quota = { limit = 10000, per = "1h" }, key = "route" }]'
    assert.deepEqual(loosenings(locks, service(looser, redis)), [
      'routes[0].rate_limit[0].rate: loosens the locked base (base.toml: defaults.rate_limit[0].rate): expected at most 100/s, got 200/s',
      'routes[0].rate_limit[0].burst: loosens the locked base (base.toml: defaults.rate_limit[0].burst): expected at most 100, got 200',
      'routes[0].rate_limit[0].mode: loosens the locked base (base.toml: defaults.rate_limit[0].mode): is locked to "enforce", got "dry_run"',
      'routes[0].rate_limit[1].quota.per: loosens the locked base (base.toml: defaults.rate_limit[1].quota.per): expected at least 86400000ms, got 3600000ms',
      'routes[0].rate_limit[1].store: loosens the locked base (base.toml: defaults.rate_limit[1].store): is locked to "redis" (one count for every replica), got "local"',
    ])
    assert.deepEqual(loosenings(locks, service('rate_limit = []', redis)), [
      'routes[0].rate_limit: loosens the locked base (base.toml: defaults.rate_limit): no limit is at least as strict as the locked limit "per-client" (rate 100/s, burst 100, key "client_ip", store "local")',
      'routes[0].rate_limit: loosens the locked base (base.toml: defaults.rate_limit): no limit is at least as strict as the locked limit "daily" (quota 10000 per 86400000ms, key "route", store "redis")',
    ])
    assert.deepEqual(loosenings(locks, service()), [
      'routes[0].rate_limit: inherits the locked base (base.toml: defaults.rate_limit[1].store), which this file cannot meet: store = "redis" needs a [redis] table (url, cluster or sentinels)',
    ])
  })

  test('api_key, cors, websocket and timeout say what weaker means; other policies must equal the lock', () => {
    const apiKey = '[defaults]\napi_key = { keys_file = "/etc/keys.json" }\n'
    assert.deepEqual(loosenings(apiKey, service('api_key = { keys_file = "/etc/keys.json" }')), [])
    assert.deepEqual(loosenings(apiKey, service('api_key = { keys_file = "/tmp/mine.json", forward_key = true }')).map((line) => line.split(':')[0]), [
      'routes[0].api_key.keys_file',
      'routes[0].api_key.forward_key',
    ])
    const cors = '[defaults]\ncors = { origins = ["https://a.example", "https://b.example"] }\n'
    assert.deepEqual(loosenings(cors, service('cors = { origins = ["https://a.example"] }')), [])
    assert.deepEqual(loosenings(cors, service('cors = { origins = ["*"] }')).map((line) => line.split(':')[0]), ['routes[0].cors.origins'])
    assert.deepEqual(loosenings(cors, service('cors = { origins = ["https://a.example"], credentials = true }')).map((line) => line.split(':')[0]), ['routes[0].cors.credentials'])
    const websocket = '[defaults]\nwebsocket = { enabled = false }\n'
    assert.equal(load(websocket, service()).routes[0]!.policies.websocket!.enabled, false, 'the lock replaces the built-in default')
    assert.deepEqual(loosenings(websocket, service('websocket = { enabled = true }')).map((line) => line.split(':')[0]), ['routes[0].websocket.enabled'])
    assert.deepEqual(loosenings('[defaults]\ntimeout = "30s"\n', service('timeout = "10s"')), [])
    assert.deepEqual(loosenings('[defaults]\ntimeout = "30s"\n', service('timeout = "0s"')), [
      'routes[0].timeout: loosens the locked base (base.toml: defaults.timeout): expected at most 30000ms, got none (0)',
    ])
    const mirror = '[defaults]\nmirror = { upstream = "shadow" }\n'
    const twoRoutes = service().replace(/$/, '\n[[routes]]\nname = "b"\nlistener = "in"\npath = "/b"\nupstream = "u"\n')
    assert.deepEqual(loosenings(mirror, twoRoutes), [
      'routes[0].mirror: inherits the locked base (base.toml: defaults.mirror.upstream), which this file cannot meet: no upstream named "shadow" (defined: u)',
    ])
    const retry = '[defaults]\nretry = { attempts = 2 }\n'
    assert.deepEqual(loosenings(retry, service('retry = { attempts = 2 }')), [])
    assert.match(loosenings(retry, service('retry = { attempts = 1 }'))[0]!, /^routes\[0\]\.retry: loosens the locked base \(base\.toml: defaults\.retry\): is locked to /)
  })

  test('trusted_proxies: the same ranges, neither more nor fewer (they decide which address ip rules see)', () => {
    const locks = '[gateway]\ntrusted_proxies = ["10.0.0.0/8", "fd00::/8"]\n'
    assert.deepEqual(load(locks, service()).gateway.trustedProxies, ['10.0.0.0/8', 'fd00::/8'])
    const own = (list: string) => service().replace('service = "t"', `service = "t"\ntrusted_proxies = ${list}`)
    assert.deepEqual(loosenings(locks, own('["fd00::/8", "10.0.0.0/8"]')), [])
    assert.deepEqual(loosenings(locks, own('["10.0.0.0/8"]')), [
      'gateway.trusted_proxies: loosens the locked base (base.toml: gateway.trusted_proxies): is locked to ["10.0.0.0/8", "fd00::/8"] (neither more nor fewer proxies), got ["10.0.0.0/8"]',
    ])
  })

  test('a named base route locks the service route of that name, replacing the base’s [defaults] key; it must exist', () => {
    const locks = '[defaults]\nip = { allow = ["10.0.0.0/8"] }\n\n[[routes]]\nname = "admin"\nip = { allow = ["10.9.0.0/16"] }\n'
    const text = service().replace(/$/, '\n[[routes]]\nname = "admin"\nlistener = "in"\npath = "/admin/*"\nupstream = "u"\n')
    const config = load(locks, text)
    assert.deepEqual(config.routes.map((route) => route.policies.ip?.allow), [['10.0.0.0/8'], ['10.9.0.0/16']])
    assert.deepEqual(loosenings(locks, service()), [
      'routes: the locked base (base.toml: routes[0]) locks route "admin", which this file does not have (routes: api)',
    ])
    assert.deepEqual(baseLocks(base(locks)), [
      { key: 'routes.*.ip', at: 'defaults.ip' },
      { key: 'routes.admin.ip', at: 'routes[0].ip' },
    ])
  })

  test('a base holds only what it can lock; its problems name the base file', () => {
    assert.throws(() => base('[listeners.x]\nlisten = "127.0.0.1:1"\n'), (error: ConfigError) => error.source === 'base.toml' && /^base\.toml: listeners: unknown key "listeners"/.test(error.message))
    assert.throws(() => base('[[routes]]\nname = "a"\npath = "/x"\n'), (error: ConfigError) => /routes\[0\]\.path: unknown key "path"/.test(error.message))
    assert.throws(() => base('[defaults]\nlimits = { max_body = "lots" }\n'), (error: ConfigError) => /defaults\.limits\.max_body/.test(error.message))
    assert.throws(() => base('[[routes]]\nname = "a"\n[[routes]]\nname = "a"\n'), (error: ConfigError) => /routes\[1\]\.name: duplicate route name "a"/.test(error.message))
  })
})

describe('[control] base', () => {
  const withControl = (table: string) => service().replace(/$/, `\n[control]\n${table}\n`)
  const problems = (text: string) => {
    try {
      loadConfigText(text, 'conf/service.toml')
      return []
    } catch (error) {
      return (error as ConfigError).problems.map((problem) => `${problem.path}: ${problem.message}`)
    }
  }

  test('a base file is found beside the policy file; a URL is kept as written; source is optional', () => {
    assert.equal(loadConfigText(withControl('base = "base.toml"'), 'conf/service.toml').control?.base, 'conf/base.toml')
    const fromUrl = loadConfigText(withControl('base = "https://config.internal/base.toml"\nbase_cache = "base-copy.toml"'), 'conf/service.toml').control
    assert.deepEqual([fromUrl?.base, fromUrl?.baseCache, fromUrl?.source], ['https://config.internal/base.toml', 'conf/base-copy.toml', undefined])
  })

  test('what does not fit is a load error at its key', () => {
    assert.deepEqual(problems(withControl('poll = "1s"')), ['control: expected source (the policy from a URL), base (a locked base policy), or both'])
    assert.deepEqual(problems(withControl('base = "base.toml"\ncache = "c.toml"')), ['control.cache: applies to source only; a base from a URL has base_cache'])
    assert.deepEqual(problems(withControl('base = "base.toml"\nbase_cache = "c.toml"')), ['control.base_cache: applies to a base from an http(s) URL only (a base file needs no copy)'])
  })
})

describe('PILLION_BASE', () => {
  test('pins the base whatever the file’s [control] says; the file may name the same base, not another', () => {
    const plain = loadConfigText(service(), 'service.toml')
    assert.deepEqual(pinBase(plain, { base: '/etc/base.toml', baseCache: '/var/copy.toml' }).control, {
      pollMs: 15_000,
      timeoutMs: 5_000,
      jitter: 0.2,
      backoffMaxMs: 120_000,
      base: '/etc/base.toml',
      baseCache: '/var/copy.toml',
    })
    const same = loadConfigText(service().replace(/$/, '\n[control]\nbase = "/etc/base.toml"\npoll = "1s"\n'), 'service.toml')
    assert.deepEqual([pinBase(same, { base: '/etc/base.toml' }).control?.pollMs, pinBase(same, undefined)], [1000, same])
    const other = loadConfigText(service().replace(/$/, '\n[control]\nbase = "/tmp/mine.toml"\n'), 'service.toml')
    assert.throws(
      () => pinBase(other, { base: '/etc/base.toml' }),
      (error: ConfigError) =>
        error.message === 'service.toml: control.base: is pinned by PILLION_BASE to "/etc/base.toml"; leave it out or name the same base, got "/tmp/mine.toml"',
    )
  })
})

describe('the example under policies/', () => {
  test('locked-base.toml tightens policies/base/platform.toml, inherits the rest, and loosening it is refused', () => {
    const dir = resolve(import.meta.dirname, '../../../policies')
    const platform = loadBaseText(readFileSync(join(dir, 'base/platform.toml'), 'utf8'), 'base/platform.toml', {}, (path) => path)
    const text = readFileSync(join(dir, 'locked-base.toml'), 'utf8')
    const config = loadConfigText(text, 'locked-base.toml', {}, platform)
    assert.equal(config.control?.base, 'base/platform.toml')
    assert.deepEqual(config.routes.map((route) => route.policies.jwt?.issuer), [['https://idp.internal'], ['https://idp.internal']])
    assert.deepEqual(config.routes.map((route) => route.policies.ip?.allow), [['10.20.1.0/24'], undefined])
    assert.deepEqual(config.gateway.trustedProxies, ['10.0.0.0/8'])
    assert.throws(() => loadConfigText(text.replace('rate = "100/s", burst = 200', 'rate = "500/s"'), 'locked-base.toml', {}, platform), /rate_limit\[0\]\.rate: loosens the locked base \(base\/platform\.toml: defaults\.rate_limit\[0\]\.rate\)/)
  })
})
