import type { KeyObject, X509Certificate } from 'node:crypto'
import type { PemInspector } from '../core/host.ts'
import { lazyBuiltin } from './builtin.ts'

const nodeCrypto = lazyBuiltin(() => process.getBuiltinModule('node:crypto'))

const CERTIFICATE_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g

/** Every certificate in a PEM text, or why there is none it can use. */
function certificatesIn(pem: string): X509Certificate[] | string {
  const blocks = pem.match(CERTIFICATE_BLOCK)
  if (blocks === null) return 'no PEM certificate in it'
  const parsed: X509Certificate[] = []
  for (const [index, block] of blocks.entries()) {
    try {
      parsed.push(new (nodeCrypto().X509Certificate)(block))
    } catch (error) {
      return `certificate ${index + 1} does not parse: ${(error as Error).message}`
    }
  }
  return parsed
}

/**
 * PEM files read the way the TLS stacks will (node:crypto, which Node, Bun and Deno all have), so
 * `pillion check` finds a corrupt certificate or a key from another pair before a handshake does.
 */
export const pemInspector: PemInspector = {
  certificates(pem) {
    const found = certificatesIn(pem)
    return typeof found === 'string' ? found : undefined
  },
  keyPair(certPem, keyPem) {
    const found = certificatesIn(certPem)
    if (typeof found === 'string') return { file: 'cert', problem: found }
    let key: KeyObject
    try {
      key = nodeCrypto().createPrivateKey(keyPem)
    } catch (error) {
      const problem = /-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(keyPem) ? `the private key does not parse: ${(error as Error).message}` : 'no PEM private key in it'
      return { file: 'key', problem }
    }
    // The first certificate is the leaf; any after it are the chain sent along.
    if (!found[0]!.checkPrivateKey(key)) return { file: 'key', problem: 'this private key does not belong to the certificate in cert' }
    return undefined
  },
}
