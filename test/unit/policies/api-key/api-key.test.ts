import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, test } from 'node:test'
import { loadConfigText } from '../../../../src/config/load.ts'
import { GatewayError } from '../../../../src/core/errors.ts'
import { apiKeyLayer, parseKeysFile } from '../../../../src/policies/api-key/index.ts'
import { ONE_ROUTE, problemLines } from '../../fakes/policy-text.ts'
import { echoStep, exchangeFor, fakeContext, fakeGateway, MemoryHost, record } from '../../fakes/security-fakes.ts'
import type { ApiKeyPolicy } from '../../../../src/policies/api-key/index.ts'

const sha = (key: string) => createHash('sha256').update(key).digest('hex')
const POLICY: ApiKeyPolicy = { header: 'x-api-key', keysFile: '/keys.json', consumerHeader: 'x-consumer', forwardKey: false }

function setup(files: Record<string, string>) {
  const host = new MemoryHost()
  for (const [path, text] of Object.entries(files)) host.files.set(path, text)
  const security = fakeGateway(host)
  const context = fakeContext('r', security)
  const events = {
    rejects: record(context.events, 'auth_reject'),
    loaded: record(context.events, 'api_keys_loaded'),
    failed: record(context.events, 'api_keys_failed'),
  }
  const step = apiKeyLayer(POLICY, context)(echoStep())
  const store = security.keep<{ start(): void; stop(): void; reload(): Promise<void>; known(key: string): string | undefined }>('api_keys:/keys.json', null, () => assert.fail('not kept'))
  const send = async (headers: Record<string, string>) => {
    try {
      return await step(exchangeFor('http://gw/x', { headers }))
    } catch (error) {
      assert.ok(error instanceof GatewayError)
      return error
    }
  }
  return { host, events, store, send }
}

describe('api_key config', () => {
  test('defaults, and keys_file relative to the policy file', () => {
    const config = loadConfigText(`${ONE_ROUTE}\n[routes.api_key]\nkeys_file = "consumers.json"\n`, 'conf/pillion.toml')
    assert.deepEqual(config.routes[0]!.policies.apiKey, { header: 'x-api-key', keysFile: 'conf/consumers.json', consumerHeader: 'x-consumer', forwardKey: false })
  })

  test('keys_file is required; the consumer header cannot be the key header', () => {
    assert.deepEqual(problemLines(`${ONE_ROUTE}\n[routes.api_key]\nheader = "x-key"\n`), ['routes[0].api_key.keys_file: required key missing'])
    assert.match(problemLines(`${ONE_ROUTE}\n[routes.api_key]\nkeys_file = "k"\nconsumer_header = "X-API-KEY"\n`)[0]!, /is also the key header/)
  })
})

describe('keys file', () => {
  test('maps hex SHA-256 digests to consumer names', () => {
    const parsed = parseKeysFile(JSON.stringify({ [sha('k1').toUpperCase()]: 'billing' }))
    assert.ok(parsed instanceof Map)
    assert.deepEqual([...parsed], [[sha('k1'), 'billing']])
  })

  test('anything else is refused with a reason', () => {
    assert.match((parseKeysFile('[') as { problem: string }).problem, /^not JSON/)
    assert.match((parseKeysFile('[]') as { problem: string }).problem, /expected a JSON object/)
    assert.match((parseKeysFile('{"abc": "x"}') as { problem: string }).problem, /is not a hex SHA-256/)
    assert.match((parseKeysFile(JSON.stringify({ [sha('k')]: '' })) as { problem: string }).problem, /non-empty printable/)
    assert.match((parseKeysFile(JSON.stringify({ [sha('k')]: 'a\nb' })) as { problem: string }).problem, /non-empty printable/)
  })
})

describe('api_key layer', () => {
  test('a known key passes as its consumer; the key and any client-sent consumer header do not', async () => {
    const { send } = setup({ '/keys.json': JSON.stringify({ [sha('secret-1')]: 'billing' }) })
    const response = await send({ 'x-api-key': 'secret-1', 'x-consumer': 'admin' })
    assert.ok(response instanceof Response)
    assert.deepEqual((await response.json()).edits, [
      ['x-consumer', 'billing'],
      ['x-api-key', null],
    ])
  })

  test('missing and unknown keys get 401 with a challenge', async () => {
    const { send, events } = setup({ '/keys.json': JSON.stringify({ [sha('secret-1')]: 'billing' }) })
    const missing = await send({})
    assert.ok(missing instanceof GatewayError)
    assert.equal(missing.status, 401)
    assert.equal(missing.headers!['www-authenticate'], 'ApiKey header="x-api-key"')
    const unknown = await send({ 'x-api-key': 'secret-2' })
    assert.ok(unknown instanceof GatewayError)
    assert.equal(unknown.code, 'unauthorized')
    assert.deepEqual(events.rejects.map((e) => e.reason), ['missing', 'unknown'])
  })

  test('the file is watched: a change applies, a bad change keeps the last good keys', async () => {
    const { host, send, store, events } = setup({ '/keys.json': JSON.stringify({ [sha('old')]: 'a' }) })
    store.start()
    assert.ok((await send({ 'x-api-key': 'old' })) instanceof Response)
    host.files.set('/keys.json', JSON.stringify({ [sha('new')]: 'b' }))
    host.watchers.get('/keys.json')!()
    assert.ok((await send({ 'x-api-key': 'new' })) instanceof Response)
    assert.ok((await send({ 'x-api-key': 'old' })) instanceof GatewayError)
    host.files.set('/keys.json', '{ broken')
    host.watchers.get('/keys.json')!()
    assert.ok((await send({ 'x-api-key': 'new' })) instanceof Response, 'last good keys kept')
    assert.equal(events.loaded.length, 2)
    assert.equal(events.failed.length, 1)
    store.stop()
    assert.equal(host.watchers.size, 0)
  })

  test('a key seen valid is remembered by value, so its next request skips the SHA-256; an unknown key is not', async () => {
    const { send, store } = setup({ '/keys.json': JSON.stringify({ [sha('good')]: 'team-a' }) })
    assert.equal(store.known('good'), undefined)
    assert.ok((await send({ 'x-api-key': 'good' })) instanceof Response)
    assert.ok((await send({ 'x-api-key': 'bad' })) instanceof GatewayError)
    assert.equal(store.known('good'), 'team-a')
    assert.equal(store.known('bad'), undefined)
    const again = await send({ 'x-api-key': 'good' })
    assert.ok(again instanceof Response)
  })

  test('no readable file: every key is refused (fail closed)', async () => {
    const { send, events } = setup({})
    assert.ok((await send({ 'x-api-key': 'anything' })) instanceof GatewayError)
    assert.match(events.failed[0]!.error, /cannot read it/)
  })
})
