// pillion check refuses what pillion run would refuse at start, not only what the schema sees.
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { runPillion, targets, tempDir } from './harness.ts'

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
      // The certificate and the key are read together: whichever is found missing first is named.
      assert.match(refused.stderr, /listeners\.secure: cannot read tls\.(cert|key) missing-(cert|key)\.pem/)
      assert.match(refused.stderr, /routes\.keys\.api_key\.keys_file consumers\.json: /)
      assert.match(refused.stderr, new RegExp(`routes\\.tokens\\.jwt\\.secret_env: environment variable ${unset} is not set`))

      writeFileSync(join(dir, 'pillion.toml'), policy('PATH').replace('missing-cert.pem', 'cert.pem').replace('missing-key.pem', 'key.pem'))
      writeFileSync(join(dir, 'cert.pem'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n')
      writeFileSync(join(dir, 'key.pem'), '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n')
      writeFileSync(join(dir, 'consumers.json'), '{}')
      const passed = await runPillion(target, ['check', 'pillion.toml'], dir)
      assert.equal(passed.code, 0, passed.stderr)
      assert.match(passed.stdout, /pillion\.toml: ok/)
    })
  })
}
