import assert from 'node:assert/strict'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { closedPort, readBody, request, runPillion, startGateway, startUpstream, targets, tempDir, until, type Upstream } from './harness.ts'

/** The platform's floor: bodies of 1 KiB at most, loopback clients only, and which proxies are trusted. */
const baseText = (maxBody = '1kb') => `
[gateway]
trusted_proxies = ["10.0.0.0/8"]

[defaults]
limits = { max_body = "${maxBody}" }
ip = { allow = ["127.0.0.0/8", "::1"] }
`

const servicePolicy = (app: Upstream, control: string, maxBody: string) => `
[gateway]
service = "locked"
admin = "127.0.0.1:0"

[control]
${control}

[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"

[upstreams.app]
endpoints = ["${app.url}"]

[[routes]]
name = "api"
listener = "ingress"
path = "/*"
upstream = "app"
limits = { max_body = "${maxBody}" }
`

/** A base served over HTTP with an ETag, as a central config server would. */
async function baseServer() {
  let text = baseText()
  let etag = '"1"'
  const upstream = await startUpstream((req, res) => {
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, { etag })
      return res.end()
    }
    res.writeHead(200, { etag, 'content-type': 'application/toml' })
    res.end(text)
  })
  return {
    upstream,
    serve(next: string) {
      text = next
      etag = `"${Number(etag.slice(1, -1)) + 1}"`
    },
  }
}

const post = (url: string, bytes: number) => request(url, { method: 'POST', body: Buffer.alloc(bytes, 'a'), headers: { 'content-type': 'text/plain' } })

for (const target of targets()) {
  describe(`locked base policy on ${target.name}`, { skip: target.missing }, () => {
    it('from a URL: a tightening policy starts, a loosening reload is refused while the old config serves, a tightened base applies, the cached copy starts it', { timeout: 90_000 }, async () => {
      const app = await startUpstream(async (req, res) => res.end(`got ${(await readBody(req)).length}`))
      const central = await baseServer()
      const dir = tempDir()
      const baseUrl = `${central.upstream.url}/base.toml`
      const copy = join(dir, 'base-copy.toml')
      const control = `base = "${baseUrl}"\nbase_cache = "${copy}"\npoll = "50ms"`
      const file = join(dir, 'pillion.toml')
      writeFileSync(file, servicePolicy(app, control, '512b'))
      let gateway = await startGateway(target, '', {}, file)
      try {
        const api = () => gateway.listeners.ingress!
        assert.equal((await post(`${api()}/x`, 100)).body.toString(), 'got 100')
        assert.equal((await post(`${api()}/x`, 700)).status, 413, 'the service’s own, stricter limit is in force')

        const status = (await request(`${gateway.admin}/config/status`)).json()
        assert.equal(status.base.source, baseUrl)
        assert.equal(status.base.origin, 'url')
        assert.deepEqual(status.base.locks, [
          { key: 'gateway.trusted_proxies', at: 'gateway.trusted_proxies' },
          { key: 'routes.*.ip', at: 'defaults.ip' },
          { key: 'routes.*.limits', at: 'defaults.limits' },
        ])
        const config = (await request(`${gateway.admin}/config`)).json()
        assert.deepEqual(config.routes[0].policies.ip.allow, ['127.0.0.0/8', '::1'], 'what the file leaves out comes from the base')
        assert.deepEqual(config.gateway.trustedProxies, ['10.0.0.0/8'])

        writeFileSync(file, servicePolicy(app, control, '4kb'))
        const refused = await request(`${gateway.admin}/reload`, { method: 'POST' })
        assert.equal(refused.status, 422)
        assert.deepEqual(refused.json().problems, [
          {
            path: 'routes[0].limits.max_body',
            message: `loosens the locked base (${baseUrl}: defaults.limits.max_body): expected at most 1024 bytes, got 4096 bytes`,
          },
        ])
        assert.equal((await post(`${api()}/x`, 700)).status, 413, 'the running config stays')

        writeFileSync(file, servicePolicy(app, control, '512b'))
        const back = await request(`${gateway.admin}/reload`, { method: 'POST' })
        assert.deepEqual([back.status, back.json().changed], [200, false], 'the file is the running policy again')
        central.serve(baseText('256b'))
        const pending = await until('the tightened base refusing the running policy', async () => {
          const s = (await request(`${gateway.admin}/config/status`)).json()
          return s.base.pending !== undefined && s.lastReload?.ok === false ? s : undefined
        })
        assert.equal(pending.lastReload.problems[0].path, 'routes[0].limits.max_body')
        assert.match(pending.lastReload.problems[0].message, /expected at most 256 bytes, got 512 bytes/)
        assert.equal((await post(`${api()}/x`, 300)).body.toString(), 'got 300', 'still the config that passed the old base')

        writeFileSync(file, servicePolicy(app, control, '200b'))
        assert.equal((await request(`${gateway.admin}/reload`, { method: 'POST' })).status, 200)
        assert.equal((await post(`${api()}/x`, 300)).status, 413)
        const tightened = (await request(`${gateway.admin}/config/status`)).json()
        assert.equal(tightened.base.pending, undefined)
        assert.equal(tightened.base.version, pending.base.pending, 'the tightened base is in force now')
        await until('the base copy', async () => (existsSync(copy) && readFileSync(copy, 'utf8').includes('256b') ? true : undefined))

        await gateway.stop()
        await central.upstream.close()
        gateway = await startGateway(target, '', {}, file)
        assert.equal((await request(`${gateway.admin}/config/status`)).json().base.origin, 'cache', 'started from the copy while the base is down')
        assert.equal((await post(`${gateway.listeners.ingress}/x`, 300)).status, 413)
      } finally {
        await gateway.stop()
        await Promise.all([app.close(), central.upstream.close().catch(() => {})])
      }
    })

    it('from a file: a loosening policy is refused at start and by pillion check, naming both files and the key; an unreachable base URL without a copy refuses to start', { timeout: 60_000 }, async () => {
      const app = await startUpstream((_req, res) => res.end('ok'))
      const dir = tempDir()
      const baseFile = join(dir, 'base.toml')
      writeFileSync(baseFile, baseText())
      const loose = join(dir, 'loose.toml')
      writeFileSync(loose, servicePolicy(app, 'base = "base.toml"', '10kb'))
      const expected = `${loose}: routes[0].limits.max_body: loosens the locked base (${baseFile}: defaults.limits.max_body): expected at most 1024 bytes, got 10240 bytes`
      const run = await runPillion(target, ['run', '-c', loose], dir)
      assert.equal(run.code, 1)
      assert.ok(run.stderr.includes(expected), run.stderr)
      const check = await runPillion(target, ['check', loose], dir)
      assert.equal(check.code, 1)
      assert.ok(check.stderr.includes(expected), check.stderr)

      const strict = join(dir, 'strict.toml')
      writeFileSync(strict, servicePolicy(app, 'base = "base.toml"', '512b'))
      const passed = await runPillion(target, ['check', strict], dir)
      assert.equal(passed.code, 0, passed.stderr)
      assert.match(passed.stdout, /3 keys locked by .*base\.toml/)
      const gateway = await startGateway(target, '', {}, strict)
      try {
        const status = (await request(`${gateway.admin}/config/status`)).json()
        assert.deepEqual([status.base.source, status.base.origin], [baseFile, 'file'])
        assert.equal((await post(`${gateway.listeners.ingress}/x`, 700)).status, 413)
      } finally {
        await gateway.stop()
      }

      const unreachable = join(dir, 'unreachable.toml')
      writeFileSync(unreachable, servicePolicy(app, `base = "http://127.0.0.1:${await closedPort()}/base.toml"\ntimeout = "2s"`, '512b'))
      const down = await runPillion(target, ['run', '-c', unreachable], dir)
      assert.equal(down.code, 1)
      assert.match(down.stderr, /the locked base http:\/\/127\.0\.0\.1:\d+\/base\.toml is unusable, so the gateway does not start without it: .*set \[control\] base_cache/)
      await app.close()
    })

    it('pinned by PILLION_BASE: a file without [control] is held to the base at start and on reload, and cannot name another base', { timeout: 60_000 }, async () => {
      const app = await startUpstream(async (req, res) => res.end(`got ${(await readBody(req)).length}`))
      const dir = tempDir()
      const baseFile = join(dir, 'platform-base.toml')
      writeFileSync(baseFile, baseText())
      const env = { PILLION_BASE: baseFile }
      const plain = (maxBody: string, extra = '') => servicePolicy(app, '', maxBody).replace('[control]\n', extra)
      await assert.rejects(startGateway(target, plain('10kb'), env), (error: Error) => {
        assert.ok(error.message.includes(`routes[0].limits.max_body: loosens the locked base (${baseFile}: defaults.limits.max_body)`), error.message)
        return true
      })
      const file = join(dir, 'pillion.toml')
      writeFileSync(file, plain('512b'))
      const gateway = await startGateway(target, '', env, file)
      try {
        assert.equal((await request(`${gateway.admin}/config/status`)).json().base.source, baseFile)
        writeFileSync(file, plain('512b', '[control]\nbase = "mine.toml"\n'))
        const moved = await request(`${gateway.admin}/reload`, { method: 'POST' })
        assert.equal(moved.status, 422)
        assert.equal(moved.json().problems[0].path, 'control.base')
        assert.match(moved.json().problems[0].message, /is pinned by PILLION_BASE/)
        writeFileSync(file, plain('4kb'))
        const loosened = await request(`${gateway.admin}/reload`, { method: 'POST' })
        assert.equal(loosened.status, 422)
        assert.equal(loosened.json().problems[0].path, 'routes[0].limits.max_body')
        assert.equal((await post(`${gateway.listeners.ingress}/x`, 700)).status, 413, 'the running config stays')
      } finally {
        await gateway.stop()
        await app.close()
      }
    })
  })
}
