import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { loadConfigText } from '../../../../src/config/load.ts'
import { ipLayer } from '../../../../src/policies/ip/index.ts'
import { ONE_ROUTE, problemLines } from '../../fakes/policy-text.ts'
import { echoStep, exchangeFor, fakeContext, record } from '../../fakes/security-fakes.ts'
import type { IpPolicy } from '../../../../src/policies/ip/index.ts'

async function verdict(policy: IpPolicy, remoteAddress: string): Promise<number> {
  const step = ipLayer(policy, fakeContext())(echoStep())
  try {
    return (await step(exchangeFor('http://gw/x', { remoteAddress }))).status
  } catch (error) {
    return (error as { status: number }).status
  }
}

describe('ip config', () => {
  test('lists of IPv4 and IPv6 ranges', () => {
    const config = loadConfigText(`${ONE_ROUTE}\n[routes.ip]\nallow = ["10.0.0.0/8", "::1"]\ndeny = ["10.6.0.0/16"]\n`, 'x.toml')
    assert.deepEqual(config.routes[0]!.policies.ip, { allow: ['10.0.0.0/8', '::1'], deny: ['10.6.0.0/16'] })
  })

  test('typos are load errors with the key path', () => {
    assert.deepEqual(problemLines(`${ONE_ROUTE}\n[routes.ip]\nallow = ["10.0.0.1/8"]\n`), [
      'routes[0].ip.allow[0]: expected an address or CIDR range like "10.0.0.0/8", "192.168.1.7" or "fd00::/8", got "10.0.0.1/8": host bits are set; the network is 10.0.0.0/8',
    ])
    assert.deepEqual(problemLines(`${ONE_ROUTE}\n[routes.ip]\n`), ['routes[0].ip: expected allow or deny (or both) with at least one range'])
  })

  test('trusted_proxies takes the same ranges', () => {
    const text = ONE_ROUTE.replace('service = "orders"', 'service = "orders"\ntrusted_proxies = ["10.0.0.0/8", "fd00::/8"]')
    assert.deepEqual(loadConfigText(text, 'x.toml').gateway.trustedProxies, ['10.0.0.0/8', 'fd00::/8'])
    assert.match(problemLines(ONE_ROUTE.replace('service = "orders"', 'service = "orders"\ntrusted_proxies = ["proxy"]'))[0]!, /^gateway\.trusted_proxies\[0\]/)
  })
})

describe('ip layer', () => {
  test('allow list: only listed clients pass', async () => {
    const policy = { allow: ['10.0.0.0/8', '::1'], deny: [] }
    assert.equal(await verdict(policy, '10.1.2.3'), 200)
    assert.equal(await verdict(policy, '::1'), 200)
    assert.equal(await verdict(policy, '11.0.0.1'), 403)
    assert.equal(await verdict(policy, '2001:db8::1'), 403)
  })

  test('an IPv4-mapped client matches IPv4 rules', async () => {
    assert.equal(await verdict({ allow: ['127.0.0.0/8'], deny: [] }, '::ffff:127.0.0.1'), 200)
    assert.equal(await verdict({ allow: [], deny: ['127.0.0.1'] }, '::ffff:127.0.0.1'), 403)
  })

  test('deny wins over allow', async () => {
    const policy = { allow: ['10.0.0.0/8'], deny: ['10.6.0.0/16'] }
    assert.equal(await verdict(policy, '10.6.1.1'), 403)
    assert.equal(await verdict(policy, '10.7.1.1'), 200)
  })

  test('deny list alone: others pass; an address that is not one is refused', async () => {
    const policy = { allow: [], deny: ['203.0.113.0/24'] }
    assert.equal(await verdict(policy, '198.51.100.1'), 200)
    assert.equal(await verdict(policy, '203.0.113.77'), 403)
    assert.equal(await verdict(policy, ''), 403)
  })

  test('a rejection is an event with the reason', async () => {
    const context = fakeContext('admin')
    const seen = record(context.events, 'ip_reject')
    await assert.rejects(ipLayer({ allow: ['10.0.0.0/8'], deny: [] }, context)(echoStep())(exchangeFor('http://gw/', { remoteAddress: '1.2.3.4' })), {
      code: 'forbidden',
    })
    assert.deepEqual(seen, [{ route: 'admin', address: '1.2.3.4', reason: 'not_allowed' }])
  })
})
