import type { Config } from '../config/types.ts'
import type { PemInspector } from '../core/host.ts'

/** What checking TLS files needs from the host: reading them, and parsing them as its TLS stack will. */
export interface TlsFilesHost {
  readTextFile(path: string): Promise<string>
  pem: PemInspector
}

/**
 * Every TLS file the config names, read and parsed before it goes into service: listeners' cert,
 * key and client_ca, upstreams' ca, cert and key, ext_authz authorizers' ca. A key must belong to its certificate. Each problem
 * names the key path and the file.
 */
export async function tlsFileProblems(config: Config, host: TlsFilesHost): Promise<string[]> {
  const problems: string[] = []
  const read = async (where: string, path: string): Promise<string | undefined> => {
    try {
      return await host.readTextFile(path)
    } catch (error) {
      problems.push(`${where} ${path}: cannot read it: ${(error as Error).message}`)
      return undefined
    }
  }
  const checkCa = async (where: string, path: string) => {
    const text = await read(where, path)
    const problem = text === undefined ? undefined : host.pem.certificates(text)
    if (problem !== undefined) problems.push(`${where} ${path}: ${problem}`)
  }
  const checkPair = async (where: string, files: { cert: string; key: string }) => {
    const [cert, key] = await Promise.all([read(`${where}cert`, files.cert), read(`${where}key`, files.key)])
    if (cert === undefined || key === undefined) return
    const fault = host.pem.keyPair(cert, key)
    if (fault !== undefined) problems.push(`${where}${fault.file} ${files[fault.file]}: ${fault.problem}`)
  }
  for (const listener of Object.values(config.listeners)) {
    const tls = listener.tls
    if (tls === undefined) continue
    await checkPair(`listeners.${listener.name}.tls.`, tls)
    if (tls.clientCa !== undefined) await checkCa(`listeners.${listener.name}.tls.client_ca`, tls.clientCa)
  }
  for (const upstream of Object.values(config.upstreams)) {
    const tls = upstream.tls
    if (tls === undefined) continue
    if (tls.ca !== undefined) await checkCa(`upstreams.${upstream.name}.ca`, tls.ca)
    if (tls.cert !== undefined && tls.key !== undefined) await checkPair(`upstreams.${upstream.name}.`, { cert: tls.cert, key: tls.key })
  }
  for (const route of config.routes) {
    const ca = route.policies.extAuthz?.ca
    if (ca !== undefined) await checkCa(`routes.${route.name}.ext_authz.ca`, ca)
  }
  return problems
}
