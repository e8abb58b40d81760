import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { loadConfigText } from '../../../src/config/load.ts'
import type { PemInspector } from '../../../src/core/host.ts'
import { tlsFileProblems } from '../../../src/gateway/tls-files.ts'

const POLICY = `
[gateway]
service = "orders"

[listeners.mesh]
listen = "127.0.0.1:8443"
direction = "ingress"
tls = { cert = "server.pem", key = "server-key.pem", client_ca = "clients-ca.pem" }

[upstreams.payments]
endpoints = ["https://10.0.4.17:8443"]
ca = "mesh-ca.pem"
cert = "client.pem"
key = "client-key.pem"
`

/** Files by name; a PEM "parses" when it says so, and a key "belongs" to the certificate it names. */
const pem: PemInspector = {
  certificates: (text) => (text.startsWith('CERT') ? undefined : 'no PEM certificate in it'),
  keyPair: (cert, key) => {
    if (!cert.startsWith('CERT')) return { file: 'cert', problem: 'no PEM certificate in it' }
    return key === `KEY for ${cert}` ? undefined : { file: 'key', problem: 'this private key does not belong to the certificate in cert' }
  },
}

function problemsWith(files: Record<string, string>): Promise<string[]> {
  const config = loadConfigText(POLICY, '/etc/pillion/pillion.toml')
  const readTextFile = async (path: string) => {
    const text = files[path.slice('/etc/pillion/'.length)]
    if (text === undefined) throw new Error('ENOENT: no such file')
    return text
  }
  return tlsFileProblems(config, { readTextFile, pem })
}

const GOOD = {
  'server.pem': 'CERT server',
  'server-key.pem': 'KEY for CERT server',
  'clients-ca.pem': 'CERT clients CA',
  'mesh-ca.pem': 'CERT mesh CA',
  'client.pem': 'CERT client',
  'client-key.pem': 'KEY for CERT client',
}

describe('TLS files checked before a config goes into service', () => {
  it('pass when every file reads, parses and every key is its certificate\'s', async () => {
    assert.deepEqual(await problemsWith(GOOD), [])
  })

  it('name the key path and the file of each problem, listeners and upstreams alike', async () => {
    const { 'clients-ca.pem': _missing, ...rest } = GOOD
    assert.deepEqual(await problemsWith({ ...rest, 'client-key.pem': 'KEY for CERT server', 'mesh-ca.pem': 'garbage' }), [
      'listeners.mesh.tls.client_ca /etc/pillion/clients-ca.pem: cannot read it: ENOENT: no such file',
      'upstreams.payments.ca /etc/pillion/mesh-ca.pem: no PEM certificate in it',
      'upstreams.payments.key /etc/pillion/client-key.pem: this private key does not belong to the certificate in cert',
    ])
  })
})
