import { declaredLength, isBodyless } from '../core/upstream-answer.ts'
import { UpstreamError, type UpstreamFailure } from '../core/upstream-error.ts'
import type { UpstreamAnswer, UpstreamClient, UpstreamTls } from '../core/host.ts'

/** Runtime-specific fetch options (Bun's decompress:false, Deno's client) and error classification. */
export interface FetchFlavour {
  extraInit: Record<string, unknown>
  classify(error: unknown): UpstreamFailure
  /** Extra fetch options for an upstream's TLS: its CA, client certificate and server name. */
  tlsInit?(tls: UpstreamTls): Record<string, unknown>
}

/** An upstream client on the runtime's own fetch, for runtimes whose fetch is a good proxy client. */
export function fetchUpstream(flavour: FetchFlavour): UpstreamClient {
  return async (r) => {
    const init = {
      method: r.method,
      headers: r.headers,
      body: r.body,
      signal: r.signal,
      redirect: 'manual',
      ...(r.body instanceof ReadableStream ? { duplex: 'half' } : {}),
      ...flavour.extraInit,
      ...(r.tls !== undefined && flavour.tlsInit !== undefined ? flavour.tlsInit(r.tls) : {}),
    } as RequestInit
    try {
      const response = await fetch(r.url, init)
      const status = response.status
      const headers = response.headers
      let body: UpstreamAnswer['body'] = response.body
      if (body !== null && isBodyless(r.method, status)) {
        body.cancel().catch(() => {})
        body = null
      } else if (body !== null && r.bufferUpTo !== undefined && declaredLength(headers) <= r.bufferUpTo) {
        body = new Uint8Array(await response.arrayBuffer())
      }
      return { status, statusText: response.statusText, headers, body }
    } catch (error) {
      if (r.signal.aborted) throw r.signal.reason
      throw new UpstreamError(flavour.classify(error), String((error as Error)?.message ?? error), { cause: error })
    }
  }
}
