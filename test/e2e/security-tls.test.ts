// TLS termination on listeners, client-certificate verification (mTLS) where the runtime has it,
// and https upstreams signed by a private CA. Certificates are made with openssl at test time.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createServer, request as httpsRequest, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { startGateway, targets, type Gateway } from './harness.ts'
import { makeCertificates, type TestCertificates } from './security-helpers.ts'

function get(url: string, tls: { ca?: Buffer; cert?: Buffer; key?: Buffer }): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise((resolve) => {
    const req = httpsRequest(url, { agent: false, ...tls }, (res) => {
      let body = ''
      res.on('data', (d) => (body += d))
      res.on('end', () => resolve({ status: res.statusCode!, body }))
    })
    req.on('error', (error) => resolve({ error: String(error) }))
    req.end()
  })
}

const policy = (certs: TestCertificates, upstreamUrl: string, mtls: boolean) => `
[gateway]
service = "tls"
admin = "127.0.0.1:0"

[listeners.secure]
listen = "127.0.0.1:0"
direction = "ingress"
tls = { cert = "${certs.serverCert}", key = "${certs.serverKey}" }
${
  mtls
    ? `
[listeners.mutual]
listen = "127.0.0.1:0"
direction = "ingress"
tls = { cert = "${certs.serverCert}", key = "${certs.serverKey}", client_ca = "${certs.caCert}" }
`
    : ''
}
[upstreams.private]
endpoints = ["${upstreamUrl}"]
ca = "${certs.caCert}"

[upstreams.untrusted]
endpoints = ["${upstreamUrl}"]

[[routes]]
name = "trusted"
listener = "secure"
path = "/trusted/*"
upstream = "private"

[[routes]]
name = "untrusted"
listener = "secure"
path = "/untrusted/*"
upstream = "untrusted"
${mtls ? '\n[[routes]]\nname = "mutual"\nlistener = "mutual"\npath = "/*"\nupstream = "private"\n' : ''}`

for (const target of targets()) {
  describe(`TLS on ${target.name}`, { skip: target.missing }, () => {
    let certs: TestCertificates
    let upstream: Server
    let upstreamUrl: string
    let gateway: Gateway
    let ca: Buffer
    const mtls = target.name !== 'deno'

    before(async () => {
      certs = makeCertificates()
      ca = readFileSync(certs.caCert)
      upstream = createServer({ cert: readFileSync(certs.serverCert), key: readFileSync(certs.serverKey) }, (req, res) =>
        res.end(JSON.stringify({ url: req.url, proto: req.headers['x-forwarded-proto'] })),
      )
      await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve))
      upstreamUrl = `https://127.0.0.1:${(upstream.address() as AddressInfo).port}`
      gateway = await startGateway(target, policy(certs, upstreamUrl, mtls))
    })

    after(async () => {
      const code = await gateway?.stop()
      upstream?.closeAllConnections()
      await new Promise<void>((resolve) => (upstream ? upstream.close(() => resolve()) : resolve()))
      assert.equal(code, 0, `gateway exit code; stderr:\n${gateway?.stderr.join('\n')}`)
    })

    it('terminates TLS and forwards to an https upstream signed by the configured CA', async () => {
      assert.match(gateway.listeners.secure!, /^https:\/\//)
      const reply = await get(`${gateway.listeners.secure}/trusted/x`, { ca })
      assert.ok('status' in reply, JSON.stringify(reply))
      assert.equal(reply.status, 200)
      assert.deepEqual(JSON.parse(reply.body), { url: '/trusted/x', proto: 'https' })
    })

    it('an upstream without that CA is not trusted', async () => {
      const reply = await get(`${gateway.listeners.secure}/untrusted/x`, { ca })
      assert.ok('status' in reply)
      assert.equal(reply.status, 502)
    })

    it('clients that do not trust the certificate cannot connect', async () => {
      const reply = await get(`${gateway.listeners.secure}/trusted/x`, {})
      assert.ok('error' in reply)
      assert.match(reply.error, /self[- ]signed|unable to verify|certificate/i)
    })

    it('a listener with client_ca requires a client certificate signed by it', { skip: !mtls && 'Deno refuses client_ca (next test)' }, async () => {
      const without = await get(`${gateway.listeners.mutual}/x`, { ca })
      assert.ok('error' in without, `answered without a client certificate: ${JSON.stringify(without)}`)
      const withCert = await get(`${gateway.listeners.mutual}/x`, { ca, cert: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey) })
      assert.ok('status' in withCert, JSON.stringify(withCert))
      assert.equal(withCert.status, 200)
    })

    it('Deno refuses client_ca at start rather than not verifying', { skip: target.name !== 'deno' && 'only Deno lacks client certificate verification' }, async () => {
      await assert.rejects(startGateway(target, policy(certs, upstreamUrl, true)), /Deno\.serve cannot verify client certificates/)
    })
  })
}
