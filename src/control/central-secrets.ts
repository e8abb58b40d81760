import { hostSecrets, type SecretSources } from '../config/secrets.ts'
import type { Runtime } from '../core/host.ts'

/**
 * A central policy is written once for many sidecars: `${env:…}` is each sidecar's own environment,
 * as for a local file. `${file:…}` must be an absolute path on the sidecar (a mounted secret): there
 * is no policy file for a relative path to be beside, and a URL is not a directory to read from.
 */
export function centralSecrets(host: Pick<Runtime, 'env' | 'readTextFileSync'>): SecretSources {
  const local = hostSecrets(host)
  return {
    env: local.env,
    readFile(path) {
      if (!path.startsWith('/') && !/^[a-z]:[\\/]/i.test(path)) throw new Error('a policy from a central source may read absolute paths only')
      return local.readFile!(path)
    },
  }
}
