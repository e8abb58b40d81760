import assert from 'node:assert/strict'
import { renameSync, writeFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { request, startGateway, startUpstream, targets, tempDir, type Gateway, type Upstream, until } from './harness.ts'

/** An upstream that says who it is, counts the requests it serves and fails on command. */
interface Named {
  name: string
  upstream: Upstream
  hits: number
  status: number
  healthStatus: number
}

async function named(name: string, status = 200): Promise<Named> {
  const self = { name, hits: 0, status, healthStatus: 200 } as Named
  self.upstream = await startUpstream((req, res) => answer(self, req, res))
  return self
}

function answer(self: Pick<Named, 'name' | 'hits' | 'status' | 'healthStatus'>, req: IncomingMessage, res: ServerResponse): void {
  if (req.url === '/healthz') {
    res.writeHead(self.healthStatus)
    return void res.end()
  }
  self.hits++
  res.writeHead(self.status, { 'content-type': 'application/json' })
  res.end(JSON.stringify({ name: self.name }))
}

/** For DNS: "localhost" may resolve to 127.0.0.1, ::1 or both, so listen on both where the host can. */
async function dualStack(self: { name: string; hits: number; status: number; healthStatus: number }): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => answer(self, req, res))
  const listen = (host: string) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ port: 0, host, ipv6Only: false }, () => resolve())
    })
  await listen('::').catch(() => listen('127.0.0.1'))
  return { server, port: (server.address() as AddressInfo).port }
}


interface EndpointView {
  url: string
  healthy: boolean
  ejected: boolean
}

async function endpointsOf(gateway: Gateway, upstream: string): Promise<EndpointView[]> {
  const reply = await request(`${gateway.admin}/upstreams`)
  return reply.json().upstreams.find((u: { name: string }) => u.name === upstream).endpoints
}

/** Writes a whole new file and renames it into place, as config management does. */
function replaceFile(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text)
  renameSync(`${path}.tmp`, path)
}

function policy(p: { outlier: string[]; checked: string[]; endpointsFile: string; dnsPort: number }): string {
  const list = (urls: string[]) => JSON.stringify(urls)
  return `
[gateway]
service = "upstreams-test"
admin = "127.0.0.1:0"
shutdown_grace = "2s"

[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"

[upstreams.outlier]
endpoints = ${list(p.outlier)}
outlier = { consecutive_failures = 3, base_ejection = "1m" }

[upstreams.checked]
endpoints = ${list(p.checked)}
health_check = { path = "/healthz", interval = "100ms", timeout = "1s", unhealthy_threshold = 2, healthy_threshold = 2 }

[upstreams.filed]
discovery = { file = ${JSON.stringify(p.endpointsFile)} }

[upstreams.named]
discovery = { dns = "localhost:${p.dnsPort}", refresh = "1s" }

[[routes]]
listener = "ingress"
path = "/outlier/*"
strip_prefix = "/outlier"
upstream = "outlier"

[[routes]]
listener = "ingress"
path = "/checked/*"
strip_prefix = "/checked"
upstream = "checked"

[[routes]]
listener = "ingress"
path = "/filed/*"
strip_prefix = "/filed"
upstream = "filed"

[[routes]]
listener = "ingress"
path = "/named/*"
strip_prefix = "/named"
upstream = "named"
`
}

for (const target of targets()) {
  describe(`upstream health and discovery on ${target.name}`, { skip: target.missing }, () => {
    let good: Named
    let bad: Named
    let a: Named
    let b: Named
    let fileA: Named
    let fileB: Named
    const byDns = { name: 'dns', hits: 0, status: 200, healthStatus: 200 }
    let dnsServer: Server
    let endpointsFile: string
    let gateway: Gateway
    let ingress: string

    const get = async (path: string) => {
      const reply = await request(`${ingress}${path}`)
      return { status: reply.status, name: reply.status === 200 ? (reply.json().name as string) : undefined }
    }

    before(async () => {
      ;[good, bad, a, b, fileA, fileB] = await Promise.all([
        named('good'),
        named('bad', 500),
        named('a'),
        named('b'),
        named('file-a'),
        named('file-b'),
      ])
      const dns = await dualStack(byDns)
      dnsServer = dns.server
      endpointsFile = join(tempDir(), 'endpoints.json')
      replaceFile(endpointsFile, JSON.stringify([fileA.upstream.url]))
      gateway = await startGateway(
        target,
        policy({
          outlier: [good.upstream.url, bad.upstream.url],
          checked: [a.upstream.url, b.upstream.url],
          endpointsFile,
          dnsPort: dns.port,
        }),
      )
      ingress = gateway.listeners.ingress!
    })

    after(async () => {
      const code = await gateway?.stop()
      await Promise.all([good, bad, a, b, fileA, fileB].map((n) => n?.upstream.close()))
      dnsServer?.closeAllConnections()
      await new Promise((resolve) => dnsServer?.close(resolve))
      assert.equal(code, 0, `gateway exit code; stderr:\n${gateway?.stderr.join('\n')}`)
    })

    it('ejects an endpoint after consecutive failures: it gets no more traffic and /upstreams shows it', async () => {
      for (let i = 0; i < 6; i++) await get('/outlier/x')
      assert.equal(bad.hits, 3, 'the bad endpoint is called exactly consecutive_failures times')
      const goodBefore = good.hits
      for (let i = 0; i < 10; i++) assert.deepEqual(await get('/outlier/x'), { status: 200, name: 'good' })
      assert.equal(bad.hits, 3)
      assert.equal(good.hits, goodBefore + 10)
      const shown = await endpointsOf(gateway, 'outlier')
      assert.deepEqual(
        shown.map((e) => [e.url, e.ejected]),
        [
          [good.upstream.url, false],
          [bad.upstream.url, true],
        ],
      )
      assert.ok(gateway.stderr.some((line) => /"msg":"endpoint ejected"/.test(line) && line.includes(bad.upstream.url)))
    })

    it('an endpoint whose health check fails gets no traffic until it passes again', async () => {
      a.healthStatus = 503
      await until('a to turn unhealthy', async () => {
        const shown = await endpointsOf(gateway, 'checked')
        return shown.find((e) => e.url === a.upstream.url)!.healthy ? undefined : true
      })
      const aBefore = a.hits
      for (let i = 0; i < 10; i++) assert.deepEqual(await get('/checked/x'), { status: 200, name: 'b' })
      assert.equal(a.hits, aBefore)
      a.healthStatus = 200
      await until('a to be healthy again', async () => {
        const shown = await endpointsOf(gateway, 'checked')
        return shown.every((e) => e.healthy) ? true : undefined
      })
      const names = new Set<string | undefined>()
      for (let i = 0; i < 4; i++) names.add((await get('/checked/x')).name)
      assert.deepEqual(names, new Set(['a', 'b']))
    })

    it('follows the endpoints file; a bad file keeps the last good list and is logged', async () => {
      assert.deepEqual(
        await until('the file to be read', async () => {
          const reply = await get('/filed/x')
          return reply.status === 200 ? reply : undefined
        }),
        { status: 200, name: 'file-a' },
      )
      replaceFile(endpointsFile, JSON.stringify([{ url: fileB.upstream.url, weight: 2 }]))
      await until('traffic to move to file-b', async () => ((await get('/filed/x')).name === 'file-b' ? true : undefined))
      replaceFile(endpointsFile, '{ this is not json')
      const logged = await until('the failure to be logged', async () =>
        gateway.stderr.find((line) => /"msg":"discovery failed/.test(line)),
      )
      assert.equal(JSON.parse(logged).upstream, 'filed')
      assert.match(JSON.parse(logged).error, /not JSON/)
      for (let i = 0; i < 5; i++) assert.deepEqual(await get('/filed/x'), { status: 200, name: 'file-b' })
      const shown = await endpointsOf(gateway, 'filed')
      assert.deepEqual(
        shown.map((e) => e.url),
        [fileB.upstream.url],
      )
    })

    it('resolves a DNS name into endpoints and sends traffic to them', async () => {
      const port = (dnsServer.address() as AddressInfo).port
      const shown = await until('localhost to be resolved', async () => {
        const endpoints = await endpointsOf(gateway, 'named')
        return endpoints.length > 0 ? endpoints : undefined
      })
      for (const endpoint of shown) assert.ok([`http://127.0.0.1:${port}`, `http://[::1]:${port}`].includes(endpoint.url), endpoint.url)
      for (let i = 0; i < 4; i++) assert.deepEqual(await get('/named/x'), { status: 200, name: 'dns' })
      assert.equal(byDns.hits, 4)
    })
  })
}
