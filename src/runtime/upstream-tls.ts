import { readFileSync } from 'node:fs'
import type { UpstreamTls } from '../core/host.ts'

/** An upstream's TLS with its files read: what each runtime's client is given. */
export interface UpstreamTlsTexts {
  ca?: string
  cert?: string
  key?: string
  serverName?: string
}

/**
 * Builds something from an upstream's TLS once per config load: the config hands the same object to
 * every request, so the files are read on first use and a reload that changes them builds afresh.
 */
export function oncePerUpstreamTls<T>(build: (tls: UpstreamTls) => T): (tls: UpstreamTls) => T {
  const built = new WeakMap<UpstreamTls, T>()
  return (tls) => {
    let value = built.get(tls)
    if (value === undefined) built.set(tls, (value = build(tls)))
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
