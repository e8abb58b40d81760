// pillion check refuses what pillion run would refuse at start, not only what the schema sees.
import assert from 'node:assert/strict'
import { copyFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { runPillion, targets, tempDir } from './harness.ts'
import { makeCertificates } from './security-helpers.ts'

function policy(secretEnv: string): string {
  return `[gateway]
service = "preflight"

[listeners.secure]
listen = "127.0.0.1:0"
direction = "ingress"
tls = { cert = "missing-cert.pem", key = "missing-key.pem" }

[upstreams.local]
endpoints = ["http://127.0.0.1:3000"]

[[routes]]
name = "keys"
listener = "secure"
path = "/keys/*"
upstream = "local"
api_key = { keys_file = "consumers.json" }

[[routes]]
name = "tokens"
listener = "secure"
path = "/*"
upstream = "local"
jwt = { secret_env = "${secretEnv}" }
`
}

for (const target of targets()) {
  describe(`pillion check preflight on ${target.name}`, { skip: target.missing }, () => {
    it('lists every file and secret run would refuse, and passes once they are there', async () => {
      const dir = tempDir()
      const unset = `PILLION_TEST_UNSET_${Date.now()}`
      writeFileSync(join(dir, 'pillion.toml'), policy(unset))
      writeFileSync(join(dir, 'consumers.json'), '{ not json')
      const refused = await runPillion(target, ['check', 'pillion.toml'], dir)
      assert.equal(refused.code, 1)
      assert.match(refused.stderr, /the policy is valid, but pillion run would refuse it/)
      assert.match(refused.stderr, /listeners\.secure\.tls\.cert missing-cert\.pem: cannot read it/)
      assert.match(refused.stderr, /listeners\.secure\.tls\.key missing-key\.pem: cannot read it/)
      assert.match(refused.stderr, /routes\.keys\.api_key\.keys_file consumers\.json: /)
      assert.match(refused.stderr, new RegExp(`routes\\.tokens\\.jwt\\.secret_env: environment variable ${unset} is not set`))

      writeFileSync(join(dir, 'pillion.toml'), policy('PATH').replace('missing-cert.pem', 'cert.pem').replace('missing-key.pem', 'key.pem'))
      writeFileSync(join(dir, 'cert.pem'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n')
      writeFileSync(join(dir, 'key.pem'), '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n')
      writeFileSync(join(dir, 'consumers.json'), '{}')
      const corrupt = await runPillion(target, ['check', 'pillion.toml'], dir)
      assert.equal(corrupt.code, 1)
      assert.match(corrupt.stderr, /listeners\.secure\.tls\.cert cert\.pem: certificate 1 does not parse/)

      const certs = makeCertificates()
      copyFileSync(certs.serverCert, join(dir, 'cert.pem'))
      copyFileSync(certs.clientKey, join(dir, 'key.pem'))
      const mismatched = await runPillion(target, ['check', 'pillion.toml'], dir)
      assert.equal(mismatched.code, 1)
      assert.match(mismatched.stderr, /listeners\.secure\.tls\.key key\.pem: this private key does not belong to the certificate in cert/)

      copyFileSync(certs.serverKey, join(dir, 'key.pem'))
      const passed = await runPillion(target, ['check', 'pillion.toml'], dir)
      assert.equal(passed.code, 0, passed.stderr)
      assert.match(passed.stdout, /pillion\.toml: ok/)
    })

    it('warns of a route that can never match and of a name that does not resolve; --strict fails on them', async () => {
      const dir = tempDir()
      writeFileSync(
        join(dir, 'pillion.toml'),
        `[gateway]
service = "preflight"
[listeners.in]
listen = "127.0.0.1:0"
direction = "ingress"
[upstreams.local]
endpoints = ["http://127.0.0.1:3000"]
[upstreams.gone]
endpoints = ["http://pillion-preflight-test.invalid:8080"]
[[routes]]
name = "orders"
listener = "in"
path = "/orders/*"
upstream = "local"
[[routes]]
name = "one-order"
listener = "in"
path = "/orders/:id"
methods = ["GET"]
upstream = "gone"
`,
      )
      const warned = await runPillion(target, ['check', 'pillion.toml'], dir)
      assert.equal(warned.code, 0, warned.stderr)
      assert.match(warned.stdout, /pillion\.toml: ok \(1 listeners, 2 routes, 2 warnings\)/)
      assert.match(warned.stderr, /warning: routes\[1\] \("one-order"\) can never match: routes\[0\] \("orders"\) comes first/)
      assert.match(warned.stderr, /warning: upstreams\.gone\.endpoints\[0\]: the name "pillion-preflight-test\.invalid" does not resolve here/)
      const strict = await runPillion(target, ['check', '--strict', 'pillion.toml'], dir)
      assert.equal(strict.code, 1)
      assert.match(strict.stderr, /2 warnings, and --strict makes them errors/)
    })
  })
}
