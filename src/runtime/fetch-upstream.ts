import { GatewayError } from '../core/errors.ts'
import { declaredLength, isBodyless } from '../core/upstream-answer.ts'
import { UpstreamError, type UpstreamFailure } from '../core/upstream-error.ts'
import type { UpstreamAnswer, UpstreamClient, UpstreamTls } from '../core/host.ts'

/** Runtime-specific fetch options (Bun's decompress:false, Deno's client) and error classification. */
export interface FetchFlavour {
  extraInit: Record<string, unknown>
  classify(error: unknown): UpstreamFailure
  /** Extra fetch options for an upstream's TLS: its CA, client certificate and server name. */
  tlsInit?(tls: UpstreamTls): Record<string, unknown>
  /** Whether the call failed because the client's body could not be read (malformed chunks, cut short). */
  clientBodyFailed?(error: unknown): boolean
}

/** The client sent a body its runtime's parser refused midway: the client's fault, not the upstream's. */
const CLIENT_BODY_FAILED = 'the request body could not be read to its end (malformed or cut short)'

/** An upstream client on the runtime's own fetch, for runtimes whose fetch is a good proxy client. */
export function fetchUpstream(flavour: FetchFlavour): UpstreamClient {
  const extra = Object.entries(flavour.extraInit)
  return async (r) => {
    // One object of one shape, filled in place: spreading three optional parts into a literal costs
    // Bun a few µs per request (copyDataProperties, and a fresh shape for fetch to read).
    const init: Record<string, unknown> = { method: r.method, headers: r.headers, body: r.body, signal: r.signal, redirect: 'manual' }
    if (r.body instanceof ReadableStream) init.duplex = 'half'
    for (const [key, value] of extra) init[key] = value
    if (r.tls !== undefined && flavour.tlsInit !== undefined) Object.assign(init, flavour.tlsInit(r.tls))
    try {
      const response = await fetch(r.url, init as RequestInit)
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
      if (r.body instanceof ReadableStream && flavour.clientBodyFailed?.(error)) {
        throw new GatewayError('bad_request', CLIENT_BODY_FAILED, { detail: `${CLIENT_BODY_FAILED}: ${describeChain(error)}` })
      }
      throw new UpstreamError(flavour.classify(error), String((error as Error)?.message ?? error), { cause: error })
    }
  }
}

/** "fetch failed: Cannot read request body…": an error and its causes, for the error log. */
export function describeChain(error: unknown): string {
  const parts: string[] = []
  for (let at: unknown = error; at !== undefined && at !== null && parts.length < 5; at = (at as { cause?: unknown }).cause) {
    parts.push(at instanceof Error ? at.message : String(at))
  }
  return parts.join(': ')
}
