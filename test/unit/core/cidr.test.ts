import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { CidrSet, cidrContains, formatIp, parseCidr, parseIp, type Cidr } from '../../../src/core/cidr.ts'
import { resolveClientAddress } from '../../../src/listener/client-address.ts'

const cidr = (text: string): Cidr => {
  const parsed = parseCidr(text)
  assert.ok(!('problem' in parsed), `${text}: ${'problem' in parsed ? parsed.problem : ''}`)
  return parsed
}
const set = (...texts: string[]) => new CidrSet(texts.map(cidr))

describe('IP addresses', () => {
  test('IPv4 and IPv6 parse to 4 and 16 bytes and print canonically', () => {
    const cases: Array<[string, string]> = [
      ['10.1.2.3', '10.1.2.3'],
      ['::1', '::1'],
      ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
      ['2001:db8::0:1', '2001:db8::1'],
      ['fe80::1%eth0', 'fe80::1'],
      ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
      ['::', '::'],
      ['::ffff:127.0.0.1', '127.0.0.1'],
      ['::ffff:7f00:1', '127.0.0.1'],
      ['64:ff9b::192.0.2.1', '64:ff9b::c000:201'],
    ]
    for (const [input, canonical] of cases) {
      const bytes = parseIp(input)
      assert.ok(bytes, input)
      assert.equal(formatIp(bytes), canonical, input)
    }
  })

  test('anything else is not an address', () => {
    for (const text of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1:2:3:4:5:6:7:8:9', '1::2::3', 'g::1', 'localhost', '1.2.3.4 ', '::ffff:1.2.3']) {
      assert.equal(parseIp(text), undefined, JSON.stringify(text))
    }
  })
})

describe('CIDR ranges', () => {
  test('IPv4 ranges match by prefix', () => {
    assert.ok(cidrContains(cidr('10.0.0.0/8'), parseIp('10.255.1.2')!))
    assert.ok(!cidrContains(cidr('10.0.0.0/8'), parseIp('11.0.0.1')!))
    assert.ok(cidrContains(cidr('192.168.1.128/25'), parseIp('192.168.1.200')!))
    assert.ok(!cidrContains(cidr('192.168.1.128/25'), parseIp('192.168.1.127')!))
    assert.ok(cidrContains(cidr('0.0.0.0/0'), parseIp('8.8.8.8')!))
    assert.ok(cidrContains(cidr('1.2.3.4'), parseIp('1.2.3.4')!))
    assert.ok(!cidrContains(cidr('1.2.3.4'), parseIp('1.2.3.5')!))
  })

  test('IPv6 ranges match by prefix and never match IPv4 addresses', () => {
    assert.ok(cidrContains(cidr('2001:db8::/32'), parseIp('2001:db8:ffff::1')!))
    assert.ok(!cidrContains(cidr('2001:db8::/32'), parseIp('2001:db9::1')!))
    assert.ok(cidrContains(cidr('::1'), parseIp('::1')!))
    assert.ok(!cidrContains(cidr('::/0'), parseIp('10.0.0.1')!))
  })

  test('an IPv4-mapped client matches IPv4 rules, and a mapped rule matches IPv4 clients', () => {
    assert.ok(set('127.0.0.0/8').has(parseIp('::ffff:127.0.0.1')!))
    assert.ok(set('::ffff:10.0.0.0/104').has(parseIp('10.9.9.9')!))
    assert.ok(!set('::ffff:10.0.0.0/104').has(parseIp('11.0.0.1')!))
  })

  test('typos are refused with a reason', () => {
    const problem = (text: string) => {
      const parsed = parseCidr(text)
      assert.ok('problem' in parsed, text)
      return parsed.problem
    }
    assert.equal(problem('10.0.0.1/8'), 'host bits are set; the network is 10.0.0.0/8')
    assert.equal(problem('10.0.0.0/33'), 'the prefix length must be at most 32')
    assert.equal(problem('2001:db8::1/32'), 'host bits are set; the network is 2001:db8::/32')
    assert.equal(problem('10.0.0.0/'), 'the prefix length after "/" must be a number')
    assert.equal(problem('ten'), 'not an IP address')
    assert.equal(problem('fe80::1%eth0'), 'not an IP address')
  })
})

describe('client address', () => {
  const trusted = set('10.0.0.0/8', '::1')

  test('without trusted proxies the peer is the client, X-Forwarded-For or not', () => {
    assert.equal(resolveClientAddress('203.0.113.9', '1.1.1.1', undefined), '203.0.113.9')
    assert.equal(resolveClientAddress('::ffff:203.0.113.9', null, undefined), '203.0.113.9')
  })

  test('an untrusted peer cannot spoof its address', () => {
    assert.equal(resolveClientAddress('203.0.113.9', '10.0.0.5, 1.1.1.1', trusted), '203.0.113.9')
  })

  test('behind trusted proxies, the rightmost untrusted hop is the client', () => {
    assert.equal(resolveClientAddress('10.0.0.1', '198.51.100.7', trusted), '198.51.100.7')
    // The leftmost entries were written by the client and are never believed.
    assert.equal(resolveClientAddress('10.0.0.1', '6.6.6.6, 198.51.100.7, 10.0.0.2', trusted), '198.51.100.7')
    assert.equal(resolveClientAddress('::1', '[2001:db8::7]:443', trusted), '2001:db8::7')
    assert.equal(resolveClientAddress('::ffff:10.0.0.1', '198.51.100.7:5555', trusted), '198.51.100.7')
  })

  test('only trusted hops: the leftmost; an unreadable hop: the proxy that wrote it', () => {
    assert.equal(resolveClientAddress('10.0.0.1', '10.0.0.3, 10.0.0.2', trusted), '10.0.0.3')
    assert.equal(resolveClientAddress('10.0.0.1', '198.51.100.7, garbage', trusted), '10.0.0.1')
    assert.equal(resolveClientAddress('10.0.0.1', 'garbage, 10.0.0.2', trusted), '10.0.0.2')
  })
})
