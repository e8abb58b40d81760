import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { ConfigError } from '../../../src/core/config-error.ts'
import { loadConfigText } from '../../../src/config/load.ts'
import type { SecretSources } from '../../../src/config/secrets.ts'
import { REDACTED, redactConfig } from '../../../src/admin/redact.ts'
import { ONE_ROUTE } from '../fakes/policy-text.ts'

const ENV: Record<string, string> = {
  UPSTREAM: 'http://10.1.2.3:3000',
  USER: 'svc',
  PASS: 'hunter2-long-password',
  TOKEN: 'tok-0123456789',
  EMPTY: '',
}

function sources(files: Record<string, string> = {}): SecretSources & { read: string[] } {
  const read: string[] = []
  return {
    read,
    env: (name) => ENV[name],
    readFile(path) {
      read.push(path)
      const content = files[path]
      if (content === undefined) throw new Error(`ENOENT: no such file or directory, open '${path}'`)
      return content
    },
  }
}

function problems(text: string, given: SecretSources = sources(), source = 'x.toml'): string[] {
  try {
    loadConfigText(text, source, given)
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    return error.problems.map(({ path, message }) => `${path}: ${message}`)
  }
  assert.fail('expected the policy to be refused')
}

const withHeaders = (table: string) => `${ONE_ROUTE}\n[routes.request_headers]\n${table}\n`

describe('${env:…} and ${file:…} references', () => {
  test('are replaced in nested tables and arrays, several in one string', () => {
    const text = ONE_ROUTE.replace('"http://127.0.0.1:3000"', '"http://127.0.0.1:3000", "${env:UPSTREAM}"') +
      '\n[redis]\nurl = "redis://${env:USER}:${env:PASS}@127.0.0.1:6379/0"\n'
    const config = loadConfigText(text, 'x.toml', sources())
    assert.deepEqual(config.upstreams.local!.endpoints.map((endpoint) => endpoint.url), ['http://127.0.0.1:3000', 'http://10.1.2.3:3000'])
    assert.equal(config.redis && 'url' in config.redis ? config.redis.url : undefined, 'redis://svc:hunter2-long-password@127.0.0.1:6379/0')
    assert.deepEqual(config.secrets, {
      paths: ['upstreams.local.endpoints[1]', 'redis.url'],
      values: ['http://10.1.2.3:3000', 'svc', 'hunter2-long-password'],
    })
  })

  test('a file is read relative to the policy file, its trailing newline trimmed', () => {
    const given = sources({ '/etc/pillion/secrets/token': 'from-a-file\n', '/run/abs': 'absolute\r\n' })
    const config = loadConfigText(withHeaders('set = { "x-a" = "${file:secrets/token}", "x-b" = "${file:/run/abs}" }'), '/etc/pillion/pillion.toml', given)
    assert.deepEqual(given.read, ['/etc/pillion/secrets/token', '/run/abs'])
    assert.deepEqual(config.routes[0]!.policies.requestHeaders!.set, { 'x-a': 'from-a-file', 'x-b': 'absolute' })
  })

  test('header templates and their own escape are left to the header rules', () => {
    const config = loadConfigText(withHeaders('set = { "x-user" = "${jwt.sub}@${client_ip}", "x-lit" = "$${client_ip}", "x-tok" = "Bearer ${env:TOKEN}" }'), 'x.toml', sources())
    assert.deepEqual(config.routes[0]!.policies.requestHeaders!.set, {
      'x-user': '${jwt.sub}@${client_ip}',
      'x-lit': '$${client_ip}',
      'x-tok': 'Bearer tok-0123456789',
    })
    assert.deepEqual(config.secrets?.paths, ['routes[0].request_headers.set.x-tok'])
  })

  test('$${env: and $${file: are literal text; $$${env: is a header template literal', () => {
    const text = `${ONE_ROUTE}headers = { "x-lit" = "$\${env:TOKEN}-$\${file:x}" }\n`
    assert.deepEqual(loadConfigText(text, 'x.toml', sources()).routes[0]!.headers, [['x-lit', '${env:TOKEN}-${file:x}']])
    const header = loadConfigText(withHeaders('set = { "x-lit" = "$$${env:TOKEN}" }'), 'x.toml', sources())
    assert.deepEqual(header.routes[0]!.policies.requestHeaders!.set, { 'x-lit': '$${env:TOKEN}' })
    assert.equal(header.secrets, undefined)
  })

  test('an unset or empty variable, an unreadable file, a bad reference: problems at the key path', () => {
    const text = ONE_ROUTE.replace('"http://127.0.0.1:3000"', '"${env:NOPE}"') +
      '\n[redis]\nurl = "${env:EMPTY}"\n' +
      '\n[routes.request_headers]\nset = { "x-a" = "${file:missing}", "x-b" = "${env:}", "x-c" = "${env:TOKEN" }\n'
    assert.deepEqual(problems(text, sources(), '/etc/p/pillion.toml'), [
      'upstreams.local.endpoints[0]: ${env:NOPE}: expected the environment variable NOPE to be set, it is not',
      'routes[0].request_headers.set.x-a: ${file:missing}: expected a readable file /etc/p/missing: ENOENT: no such file or directory, open \'/etc/p/missing\'',
      'routes[0].request_headers.set.x-b: ${env:} names no environment variable',
      'routes[0].request_headers.set.x-c: "${env:" at character 1 is not closed by "}" (write $${ for a literal ${)',
      'redis.url: ${env:EMPTY}: expected the environment variable EMPTY to hold a value, it is empty',
    ])
  })

  test('without sources every reference is a problem; other problems of the file are still listed', () => {
    const text = ONE_ROUTE.replace('"http://127.0.0.1:3000"', '"${env:UPSTREAM}"').replace('path = "/*"', 'path = "/*"\nretries = 3')
    const [unset, unknown, ...rest] = problems(text, {})
    assert.equal(unset, 'upstreams.local.endpoints[0]: ${env:UPSTREAM}: expected the environment variable UPSTREAM to be set, it is not')
    assert.match(unknown!, /^routes\[0\]\.retries: unknown key "retries"/)
    assert.deepEqual(rest, [])
  })

  test('a problem about a string from a secret does not show the secret', () => {
    const text = ONE_ROUTE.replace('"http://127.0.0.1:3000"', '"${env:TOKEN}"')
    const [line] = problems(text)
    assert.ok(!line!.includes('tok-0123456789'), line)
    assert.match(line!, /^upstreams\.local\.endpoints\[0\]: .*\[redacted\]/)
  })
})

describe('GET /config and secrets', () => {
  test('values from references are redacted whatever their key, the rest is shown', () => {
    const text = ONE_ROUTE.replace('"http://127.0.0.1:3000"', '"${env:UPSTREAM}/"') +
      'headers = { "x-tenant" = "${env:USER}-acme" }\n' +
      '\n[redis]\nurl = "redis://127.0.0.1:6379/0?db=${env:PASS}"\n'
    const config = loadConfigText(text, 'x.toml', sources())
    const shown = redactConfig(config) as Record<string, any>
    assert.equal(shown.secrets, undefined)
    assert.equal(shown.upstreams.local.endpoints[0].url, REDACTED)
    assert.deepEqual(shown.routes[0].headers, [['x-tenant', `${REDACTED}-acme`]])
    assert.equal(shown.redis.url, `redis://127.0.0.1:6379/0?db=${REDACTED}`)
    assert.ok(!JSON.stringify(shown).includes('hunter2'))
    assert.equal(shown.gateway.service, 'orders')
  })
})
