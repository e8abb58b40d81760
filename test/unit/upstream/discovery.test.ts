import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { parseEndpointFile } from '../../../src/upstream/endpoint-file.ts'
import { endpointFor, picks, recordEvents, settle, testUpstream } from '../fakes/upstream-fakes.ts'
import type { DiscoveryConfig, OutlierPolicy } from '../../../src/upstream/config.ts'
import { besidePolicyFile } from '../../../src/core/policy-file.ts'

const dns = (host: string, refreshMs = 10_000): DiscoveryConfig => ({ dns: { host, port: 8080, scheme: 'http', refreshMs } })
const file = (path: string, refreshMs = 10_000): DiscoveryConfig => ({ file: { path, refreshMs } })
const outlier: OutlierPolicy = { consecutiveFailures: 2, baseEjectionMs: 30_000, maxEjectionMs: 300_000, maxEjectedPercent: 100 }

const urls = (t: ReturnType<typeof testUpstream>) => t.upstream.snapshot().endpoints.map((e) => e.url)

describe('DNS discovery', () => {
  it('makes every A and AAAA address an endpoint, IPv6 in brackets, and re-resolves every refresh', async () => {
    const t = testUpstream({ discovery: dns('payments.internal', 5000) })
    t.host.dns.set('payments.internal', ['10.0.0.2', '10.0.0.1', 'fd00::7', '10.0.0.1'])
    assert.equal(t.upstream.pick(), undefined, 'nothing before the first resolution')
    t.upstream.start()
    await settle()
    assert.deepEqual(urls(t), ['http://10.0.0.1:8080', 'http://10.0.0.2:8080', 'http://[fd00::7]:8080'])
    assert.equal(t.host.resolutions, 1)
    await t.timers.advance(5000)
    assert.equal(t.host.resolutions, 2)
    t.upstream.stop()
    assert.equal(t.timers.pending, 0)
  })

  it('an update keeps the state of endpoints that stay, including requests in flight and ejections', async () => {
    const t = testUpstream({ discovery: dns('payments.internal', 5000), outlier })
    const updates = recordEvents(t.events, 'discovery_updated')
    t.host.dns.set('payments.internal', ['10.0.0.1', '10.0.0.2', '10.0.0.3'])
    t.upstream.start()
    await settle()
    const kept = endpointFor(t.upstream, 'http://10.0.0.2:8080')
    const ejected = endpointFor(t.upstream, 'http://10.0.0.3:8080')
    const dropped = endpointFor(t.upstream, 'http://10.0.0.1:8080')
    kept.active = 4 // as the forwarder counts requests in flight
    dropped.active = 1
    t.upstream.report(ejected, false)
    t.upstream.report(ejected, false)
    t.host.dns.set('payments.internal', ['10.0.0.3', '10.0.0.2', '10.0.0.9'])
    await t.timers.advance(5000)
    assert.deepEqual(urls(t), ['http://10.0.0.2:8080', 'http://10.0.0.3:8080', 'http://10.0.0.9:8080'])
    assert.equal(endpointFor(t.upstream, 'http://10.0.0.2:8080'), kept, 'the same object')
    const shown = t.upstream.snapshot().endpoints
    assert.equal(shown[0]!.active, 4)
    assert.equal(shown[1]!.ejected, true)
    assert.ok(!picks(t.upstream, 20).includes('http://10.0.0.3:8080'))
    // A request still holding the dropped endpoint finishes normally.
    dropped.active--
    t.upstream.report(dropped, false)
    t.upstream.report(dropped, false)
    assert.equal(t.upstream.snapshot().endpoints.length, 3)
    assert.deepEqual(
      updates.map((u) => u.event.endpoints),
      [3, 3],
    )
    // An unchanged answer is no update.
    await t.timers.advance(5000)
    assert.equal(updates.length, 2)
    t.upstream.stop()
  })

  it('a failed resolution keeps the last good list and says why, once per reason', async () => {
    const t = testUpstream({ discovery: dns('payments.internal', 1000) })
    const failures = recordEvents(t.events, 'discovery_failed')
    t.host.dns.set('payments.internal', ['10.0.0.1'])
    t.upstream.start()
    await settle()
    t.host.dns.set('payments.internal', new Error('SERVFAIL'))
    await t.timers.advance(3000)
    assert.deepEqual(urls(t), ['http://10.0.0.1:8080'])
    assert.deepEqual(
      failures.map((f) => f.event),
      [{ upstream: 'payments', error: 'cannot resolve payments.internal: SERVFAIL' }],
    )
    assert.equal(t.upstream.snapshot().discovery?.lastError, 'cannot resolve payments.internal: SERVFAIL')
    t.host.dns.set('payments.internal', ['10.0.0.1'])
    await t.timers.advance(1000)
    assert.deepEqual(t.upstream.snapshot().discovery, { source: 'dns', target: 'payments.internal:8080' })
    t.upstream.stop()
  })

  it('takes a literal address without a lookup', async () => {
    const t = testUpstream({ discovery: { dns: { host: '::1', port: 8443, scheme: 'https', refreshMs: 1000 } } })
    t.upstream.start()
    await settle()
    assert.deepEqual(urls(t), ['https://[::1]:8443'])
    assert.equal(t.host.resolutions, 0)
    t.upstream.stop()
  })
})

describe('file discovery', () => {
  it('reads the file at start and again when it changes', async () => {
    const t = testUpstream({ discovery: file('/etc/pillion/endpoints.json') })
    t.host.files.set('/etc/pillion/endpoints.json', '["http://10.0.0.1:8080"]')
    t.upstream.start()
    await settle()
    assert.deepEqual(urls(t), ['http://10.0.0.1:8080'])
    t.host.write('/etc/pillion/endpoints.json', '[{ "url": "http://10.0.0.2:8080/", "weight": 3 }, "http://10.0.0.1:8080"]')
    await settle()
    assert.deepEqual(
      t.upstream.snapshot().endpoints.map((e) => [e.url, e.weight]),
      [
        ['http://10.0.0.2:8080', 3],
        ['http://10.0.0.1:8080', 1],
      ],
    )
    t.upstream.stop()
    assert.equal(t.host.watchers.size, 0, 'the watcher is closed')
    assert.equal(t.timers.pending, 0)
  })

  it('a bad file keeps the last good list and says why; a fixed file applies', async () => {
    const path = '/srv/endpoints.json'
    const t = testUpstream({ discovery: file(path) })
    const seen = recordEvents(t.events, 'discovery_failed', 'discovery_updated')
    t.host.files.set(path, '["http://10.0.0.1:8080"]')
    t.upstream.start()
    await settle()
    const before = endpointFor(t.upstream, 'http://10.0.0.1:8080')
    for (const bad of ['{not json', '[]', '["ftp://x"]', '{"url": "http://a"}']) {
      t.host.write(path, bad)
      await settle()
      assert.deepEqual(urls(t), ['http://10.0.0.1:8080'], bad)
    }
    assert.equal(endpointFor(t.upstream, 'http://10.0.0.1:8080'), before)
    assert.equal(seen[0]!.name, 'discovery_updated')
    const reasons = seen.slice(1).map(({ event }) => (event as { error: string }).error)
    assert.match(reasons[0]!, /^\/srv\/endpoints\.json: not JSON: /)
    assert.deepEqual(reasons.slice(1), [
      '/srv/endpoints.json: expected at least one endpoint, got none',
      '/srv/endpoints.json: [0]: expected an http:// or https:// URL like "http://127.0.0.1:3000", got "ftp://x"',
      '/srv/endpoints.json: expected a JSON array of endpoint URLs or of { "url": ..., "weight": ... } objects, got an object',
    ])
    t.host.write(path, '["http://10.0.0.2:8080"]')
    await settle()
    assert.deepEqual(urls(t), ['http://10.0.0.2:8080'])
    assert.equal(t.upstream.snapshot().discovery?.lastError, undefined)
    t.upstream.stop()
  })

  it('a slow read of the old text cannot undo a newer one', async () => {
    const path = '/srv/endpoints.json'
    const t = testUpstream({ discovery: file(path) })
    const pending: Array<{ text: string; release: () => void }> = []
    t.host.readTextFile = (readPath) => {
      const text = t.host.files.get(readPath)!
      return new Promise((resolve) => pending.push({ text, release: () => resolve(text) }))
    }
    t.host.files.set(path, '["http://10.0.0.1:8080"]')
    t.upstream.start() // read 1 sees the old text
    t.host.write(path, '["http://10.0.0.2:8080"]') // read 2 sees the new one
    pending[1]!.release()
    await settle()
    pending[0]!.release()
    await settle()
    assert.deepEqual(urls(t), ['http://10.0.0.2:8080'])
    t.upstream.stop()
  })

  it('a file that is bad or missing at start leaves no endpoints, until it is fixed', async () => {
    const path = '/srv/endpoints.json'
    const t = testUpstream({ discovery: file(path, 2000) })
    const failures = recordEvents(t.events, 'discovery_failed')
    t.upstream.start()
    await settle()
    assert.equal(t.upstream.pick(), undefined)
    assert.match(t.upstream.snapshot().discovery!.lastError!, /cannot read \/srv\/endpoints\.json: ENOENT/)
    // The re-read every refresh finds it even if no watcher fires (a directory created later, a symlink swap).
    t.host.files.set(path, '["http://10.0.0.1:8080"]')
    await t.timers.advance(2000)
    assert.deepEqual(urls(t), ['http://10.0.0.1:8080'])
    assert.equal(failures.length, 1)
    t.upstream.stop()
  })

  it('a watcher that cannot start is reported, and the re-read carries on', async () => {
    const path = '/srv/endpoints.json'
    const t = testUpstream({ discovery: file(path, 1000) })
    const failures = recordEvents(t.events, 'discovery_failed')
    t.host.watchFile = () => {
      throw new Error('ENOENT: no such directory')
    }
    t.host.files.set(path, '["http://10.0.0.1:8080"]')
    t.upstream.start()
    await settle()
    assert.match(failures[0]!.event.error, /^cannot watch \/srv\/endpoints\.json/)
    assert.deepEqual(urls(t), ['http://10.0.0.1:8080'])
    t.upstream.stop()
  })
})

describe('the endpoints file format', () => {
  it('takes URLs and { url, weight } objects, normalized like the policy file', () => {
    assert.deepEqual(parseEndpointFile('["http://a:1/", {"url": "https://B:2/v1", "weight": 5}]'), {
      value: [
        { url: 'http://a:1', weight: 1 },
        { url: 'https://b:2/v1', weight: 5 },
      ],
    })
  })

  it('names the problem and where it is', () => {
    const problem = (text: string) => parseEndpointFile(text).problem
    assert.match(problem('')!, /^not JSON: /)
    assert.equal(problem('null'), 'expected a JSON array of endpoint URLs or of { "url": ..., "weight": ... } objects, got null')
    assert.equal(problem('[]'), 'expected at least one endpoint, got none')
    assert.equal(problem('["http://a:1", 7]'), '[1]: expected an endpoint URL or { "url": ..., "weight": ... }, got 7')
    assert.equal(problem('[{"url": "http://a:1", "weight": 0}]'), '[0].weight: expected a positive integer, got 0')
    assert.equal(problem('[{"url": "http://a:1", "wieght": 2}]'), '[0]: unknown key "wieght" (allowed: url, weight)')
    assert.equal(problem('[{"weight": 2}]'), '[0].url: required key missing')
    assert.equal(problem('["http://a:1", "http://a:1/"]'), '[1]: "http://a:1" is listed twice')
    assert.equal(problem('["http://user:pw@a:1"]'), '[0]: expected an endpoint URL without user name or password')
  })
})

describe('a discovery file path', () => {
  it('is relative to the policy file, not to where the gateway started', () => {
    assert.equal(besidePolicyFile('endpoints.json', '/etc/pillion/pillion.toml'), '/etc/pillion/endpoints.json')
    assert.equal(besidePolicyFile('eps/a.json', 'conf/pillion.toml'), 'conf/eps/a.json')
    assert.equal(besidePolicyFile('endpoints.json', 'pillion.toml'), 'endpoints.json')
    assert.equal(besidePolicyFile('/srv/endpoints.json', '/etc/pillion/pillion.toml'), '/srv/endpoints.json')
    assert.equal(besidePolicyFile('endpoints.json', 'C:\\pillion\\pillion.toml'), 'C:\\pillion\\endpoints.json')
    assert.equal(besidePolicyFile('D:\\eps.json', 'C:\\pillion\\pillion.toml'), 'D:\\eps.json')
  })
})
