import { readFileSync } from 'node:fs'
import type { UpstreamTls } from '../core/host.ts'

/** An upstream's TLS with its files read: what each runtime's client is given. */
export interface UpstreamTlsTexts {
  ca?: string
  cert?: string
  key?: string
  serverName?: string
}

/** Bumped when the files behind upstream TLS settings change (rotation): what was built from them is built again. */
let filesGeneration = 0

export function upstreamTlsFilesChanged(): void {
  filesGeneration++
}

/**
 * Builds something from an upstream's TLS once, and again after its files change: the config hands
 * the same object to every request, so the files are read on first use, not per request. `retire`
 * is given what a rebuild replaced (a pool to close once its calls are done).
 */
export function oncePerUpstreamTls<T>(build: (tls: UpstreamTls) => T, retire?: (old: T) => void): (tls: UpstreamTls) => T {
  const built = new WeakMap<UpstreamTls, { value: T; generation: number }>()
  return (tls) => {
    const entry = built.get(tls)
    if (entry !== undefined && entry.generation === filesGeneration) return entry.value
    const value = build(tls)
    built.set(tls, { value, generation: filesGeneration })
    if (entry !== undefined) retire?.(entry.value)
    return value
  }
}

export function readUpstreamTls(tls: UpstreamTls): UpstreamTlsTexts {
  const texts: UpstreamTlsTexts = {}
  if (tls.ca !== undefined) texts.ca = readFileSync(tls.ca, 'utf8')
  if (tls.cert !== undefined) texts.cert = readFileSync(tls.cert, 'utf8')
  if (tls.key !== undefined) texts.key = readFileSync(tls.key, 'utf8')
  if (tls.serverName !== undefined) texts.serverName = tls.serverName
  return texts
}
