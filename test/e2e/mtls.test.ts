// Two Pillions talking mutual TLS: an egress Pillion presents a client certificate to an upstream
// that is another Pillion's TLS listener, which verifies it with client_ca and allowed_sans. The
// egress side runs on each target; the side that checks names runs where the runtime can (Node),
// and each target's own client_ca listener is called too where it has one. Certificates come from
// openssl at test time.
//
// Per target T: a Node ingress checks names for every T's egress, and T's own ingress (names and
// client_ca) is called too where T can verify clients (not Deno).
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { ROOT, runPillion, startGateway, startUpstream, targets, tempDir, type Gateway, type Target, type Upstream } from './harness.ts'
import { issueCertificate, makeCertificates, type TestCertificates } from './security-helpers.ts'

const NODE: Target = { name: 'node', command: ['node', join(ROOT, 'dist/pillion.js')] }
const CHECKOUT_ID = 'spiffe://cluster.local/ns/shop/sa/checkout'

interface Identities {
  certs: TestCertificates
  checkout: { cert: string; key: string }
  intruder: { cert: string; key: string }
}

function makeIdentities(): Identities {
  const certs = makeCertificates()
  const client = (name: string, id: string) => issueCertificate(certs, name, `/CN=${name}`, `subjectAltName=URI:${id}\nextendedKeyUsage=clientAuth\n`)
  return { certs, checkout: client('checkout', CHECKOUT_ID), intruder: client('intruder', 'spiffe://cluster.local/ns/shop/sa/intruder') }
}

/** The called side: `strict` checks the client's names, `mutual` only that client_ca signed it. */
function ingressPolicy(ids: Identities, app: Upstream, withNames: boolean): string {
  const { certs } = ids
  return `
[gateway]
service = "ingress"
admin = "127.0.0.1:0"

[listeners.mutual]
listen = "127.0.0.1:0"
direction = "ingress"
tls = { cert = "${certs.serverCert}", key = "${certs.serverKey}", client_ca = "${certs.caCert}" }
${
  withNames
    ? `
[listeners.strict]
listen = "127.0.0.1:0"
direction = "ingress"
tls = { cert = "${certs.serverCert}", key = "${certs.serverKey}", client_ca = "${certs.caCert}", allowed_sans = ["${CHECKOUT_ID}", "*.shop.internal"] }

[[routes]]
name = "strict"
listener = "strict"
path = "/*"
upstream = "app"
`
    : ''
}
[upstreams.app]
endpoints = ["${app.url}"]

[[routes]]
name = "mutual"
listener = "mutual"
path = "/*"
upstream = "app"
`
}

/** The calling side: one upstream a way of meeting the ingress, one route to each. */
function egressPolicy(ids: Identities, strict: string, mutual: string, ownStrict: string, serverNames: boolean): string {
  const { certs, checkout, intruder } = ids
  const upstream = (name: string, url: string, keys: string) => `
[upstreams.${name}]
endpoints = ["${url}"]
ca = "${certs.caCert}"
${keys}

[[routes]]
name = "${name}"
listener = "egress"
path = "/${name}/*"
strip_prefix = "/${name}"
upstream = "${name}"
`
  const as = (id: { cert: string; key: string }) => `cert = "${id.cert}"\nkey = "${id.key}"`
  return `
[gateway]
service = "egress"
admin = "127.0.0.1:0"

[listeners.egress]
listen = "127.0.0.1:0"
direction = "egress"
${upstream('checkout', strict, as(checkout))}
${upstream('intruder', strict, as(intruder))}
${upstream('anonymous', strict, '')}
${upstream('mutual', mutual, as(checkout))}
${upstream('mutual_anonymous', mutual, '')}
${upstream('own_strict', ownStrict, as(checkout))}
${upstream('own_intruder', ownStrict, as(intruder))}
${serverNames ? upstream('named', strict, `${as(checkout)}\nserver_name = "ingress.internal"`) : ''}
${serverNames ? upstream('misnamed', strict, `${as(checkout)}\nserver_name = "payments.internal"`) : ''}
`
}

async function get(url: string): Promise<{ status: number; body: string }> {
  const response = await fetch(url)
  return { status: response.status, body: await response.text() }
}

for (const target of targets()) {
  describe(`mutual TLS between two Pillions, egress on ${target.name}`, { skip: target.missing }, () => {
    // Deno's server cannot verify a client certificate at all.
    const verifiesClients = target.name !== 'deno'
    const serverNames = target.name !== 'deno'
    let ids: Identities
    let app: Upstream
    let ingress: Gateway
    let targetIngress: Gateway | undefined
    let egress: Gateway
    const seen: string[] = []

    before(async () => {
      ids = makeIdentities()
      app = await startUpstream((req, res) => {
        seen.push(req.url!)
        res.end(JSON.stringify({ url: req.url, proto: req.headers['x-forwarded-proto'] }))
      })
      ingress = await startGateway(NODE, ingressPolicy(ids, app, true))
      if (verifiesClients && target.name !== 'node') targetIngress = await startGateway(target, ingressPolicy(ids, app, true))
      const own = targetIngress ?? ingress
      egress = await startGateway(target, egressPolicy(ids, ingress.listeners.strict!, own.listeners.mutual!, own.listeners.strict!, serverNames))
    })

    after(async () => {
      const running = [egress, targetIngress, ingress].filter((gateway) => gateway !== undefined)
      const codes = await Promise.all(running.map((gateway) => gateway.stop()))
      await app?.close()
      assert.deepEqual(codes, running.map(() => 0), `exit codes; egress stderr:\n${egress?.stderr.join('\n')}`)
    })

    it('the egress presents its certificate and the ingress lets the allowed name through', async () => {
      const reply = await get(`${egress.listeners.egress}/checkout/orders?id=7`)
      assert.equal(reply.status, 200, reply.body)
      assert.deepEqual(JSON.parse(reply.body), { url: '/orders?id=7', proto: 'https' })
    })

    it('a certificate signed by client_ca without an allowed name is refused at the handshake', async () => {
      const before = seen.length
      const reply = await get(`${egress.listeners.egress}/intruder/orders`)
      assert.equal(reply.status, 502, reply.body)
      assert.equal(JSON.parse(reply.body).code, 'upstream_unavailable')
      assert.equal(seen.length, before, 'the app saw a request the ingress should have refused')
      const metrics = await (await fetch(`${ingress.admin}/metrics`)).text()
      assert.match(metrics, /pillion_tls_client_refusals_total\{listener="strict",reason="allowed_sans"\} [1-9]/)
    })

    it('no client certificate, no connection', async () => {
      const reply = await get(`${egress.listeners.egress}/anonymous/orders`)
      assert.equal(reply.status, 502, reply.body)
    })

    it(`a ${target.name} listener with client_ca verifies the egress's certificate`, { skip: !verifiesClients && 'Deno.serve cannot verify client certificates' }, async () => {
      const allowed = await get(`${egress.listeners.egress}/mutual/x`)
      assert.equal(allowed.status, 200, allowed.body)
      const refused = await get(`${egress.listeners.egress}/mutual_anonymous/x`)
      assert.equal(refused.status, 502, refused.body)
    })

    it(`a ${target.name} listener with allowed_sans checks the names in the egress's certificate`, { skip: !verifiesClients && 'Deno.serve cannot verify client certificates' }, async () => {
      const before = seen.length
      const allowed = await get(`${egress.listeners.egress}/own_strict/x`)
      assert.equal(allowed.status, 200, allowed.body)
      assert.equal(seen.length, before + 1)
      const refused = await get(`${egress.listeners.egress}/own_intruder/x`)
      assert.equal(refused.status, 502, refused.body)
      assert.equal(seen.length, before + 1, 'the app saw a request the ingress should have refused')
      const metrics = await (await fetch(`${(targetIngress ?? ingress).admin}/metrics`)).text()
      assert.match(metrics, /pillion_tls_client_refusals_total\{listener="strict",reason="allowed_sans"\} [1-9]/)
    })

    it('server_name is the name sent and verified instead of the endpoint URL\'s host', { skip: !serverNames && "Deno's fetch cannot set a server name" }, async () => {
      const named = await get(`${egress.listeners.egress}/named/x`)
      assert.equal(named.status, 200, named.body)
      const misnamed = await get(`${egress.listeners.egress}/misnamed/x`)
      assert.equal(misnamed.status, 502, misnamed.body)
    })

    it('what Deno cannot do, check and run refuse by key, naming the runtime', { skip: target.name !== 'deno' && 'Deno only', timeout: 60_000 }, async () => {
      const dir = tempDir()
      const file = join(dir, 'pillion.toml')
      const strict = ingress.listeners.strict!
      writeFileSync(file, egressPolicy(ids, strict, strict, strict, true))
      const checked = await runPillion(target, ['check', file], dir)
      assert.equal(checked.code, 1, checked.stdout + checked.stderr)
      const expected = /upstreams\.named\.server_name: Deno's fetch cannot send a server name/
      assert.match(checked.stderr, expected)
      const run = await runPillion(target, ['run', '-c', file], dir)
      assert.equal(run.code, 1)
      assert.match(run.stderr, expected)
      writeFileSync(file, ingressPolicy(ids, app, true))
      const server = await runPillion(target, ['check', file], dir)
      assert.match(server.stderr, /listeners\.mutual\.tls\.client_ca: Deno\.serve cannot verify client certificates/)
      assert.match(server.stderr, /listeners\.strict\.tls\.allowed_sans: Deno\.serve cannot verify client certificates/)
    })
  })
}
