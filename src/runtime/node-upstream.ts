import { readFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import type { Socket } from 'node:net'
import { declaredLength, isBodyless } from '../proxy/answer.ts'
import { UpstreamError, type UpstreamFailure } from '../proxy/upstream-error.ts'
import type { UpstreamAnswer, UpstreamClient, UpstreamRequest } from './types.ts'

/**
 * Node's upstream client, on node:http rather than fetch: undici's fetch decodes content-encoding,
 * rejects Expect/Connection headers and costs several times more CPU per request (runtime.md §2.3, §9).
 */
const agents = {
  'http:': new http.Agent({ keepAlive: true, scheduling: 'lifo' }),
  'https:': new https.Agent({ keepAlive: true, scheduling: 'lifo' }),
}

/** One keep-alive agent per upstream CA file (an upstream's `ca`), its PEM read on first use. */
const caAgents = new Map<string, https.Agent>()

function agentFor(protocol: string, caFile: string | undefined): http.Agent {
  if (caFile === undefined || protocol !== 'https:') return agents[protocol as 'http:' | 'https:']
  let agent = caAgents.get(caFile)
  if (agent === undefined) caAgents.set(caFile, (agent = new https.Agent({ keepAlive: true, scheduling: 'lifo', ca: readFileSync(caFile, 'utf8') })))
  return agent
}

const CONNECT_FAILURES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL'])

function failureOf(error: NodeJS.ErrnoException): UpstreamFailure {
  if (error.code !== undefined && CONNECT_FAILURES.has(error.code)) return 'connect-failure'
  if (error.code === 'HPE_INVALID_CONSTANT' || error.code?.startsWith('HPE_')) return 'protocol-error'
  return 'reset'
}

function outgoingHeaders(headers: Headers): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const [name, value] of headers) {
    const prior = out[name]
    if (prior === undefined) out[name] = value
    else if (Array.isArray(prior)) prior.push(value)
    else out[name] = [prior, value]
  }
  return out
}

function incomingHeaders(raw: string[]): Headers {
  const headers = new Headers()
  for (let i = 0; i < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!)
  return headers
}

function responseBody(message: http.IncomingMessage): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      message.on('data', (chunk: Buffer) => {
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength))
        if ((controller.desiredSize ?? 0) <= 0) message.pause()
      })
      message.on('end', () => controller.close())
      message.on('error', (error) => controller.error(error))
      message.on('close', () => {
        if (!message.complete) controller.error(new UpstreamError('reset', 'upstream closed the response early'))
      })
    },
    pull() {
      message.resume()
    },
    cancel() {
      message.destroy()
    },
  })
}

/** Collects a small body as Node hands it over: no web stream, one Buffer at the end. */
function readWhole(message: http.IncomingMessage, signal: AbortSignal, done: (body: Uint8Array<ArrayBuffer>) => void, failed: (error: unknown) => void): void {
  const chunks: Buffer[] = []
  let size = 0
  message.on('data', (chunk: Buffer) => {
    chunks.push(chunk)
    size += chunk.byteLength
  })
  // Node's socket chunks are Buffers on a plain ArrayBuffer (never shared memory).
  message.on('end', () => done((chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)) as Uint8Array<ArrayBuffer>))
  message.on('close', () => {
    if (!message.complete) failed(signal.aborted ? signal.reason : new UpstreamError('reset', 'upstream closed the response early'))
  })
}

async function pumpBody(body: ReadableStream<Uint8Array>, request: http.ClientRequest): Promise<void> {
  const reader = body.getReader()
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      if (!request.write(value)) await new Promise((resolve) => request.once('drain', resolve))
      if (request.destroyed) return
    }
    request.end()
  } catch (error) {
    request.destroy(error as Error)
  }
}

export const nodeUpstream: UpstreamClient = (r: UpstreamRequest) =>
  new Promise<UpstreamAnswer>((resolve, reject) => {
    if (r.signal.aborted) return reject(r.signal.reason)
    const url = new URL(r.url)
    const request = (url.protocol === 'https:' ? https : http).request({
      protocol: url.protocol,
      hostname: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname,
      port: url.port,
      path: url.pathname + url.search,
      method: r.method,
      headers: outgoingHeaders(r.headers),
      agent: agentFor(url.protocol, r.ca),
    })
    const onAbort = () => request.destroy(r.signal.reason)
    r.signal.addEventListener('abort', onAbort, { once: true })
    request.on('close', () => r.signal.removeEventListener('abort', onAbort))
    request.on('socket', (socket: Socket) => {
      if (!socket.connecting) return
      const timer = setTimeout(
        () => request.destroy(new UpstreamError('connect-timeout', `no connection within ${r.connectTimeoutMs}ms`)),
        r.connectTimeoutMs,
      )
      socket.once('connect', () => clearTimeout(timer))
      socket.once('close', () => clearTimeout(timer))
    })
    request.on('error', (error: NodeJS.ErrnoException) => {
      if (r.signal.aborted) return reject(r.signal.reason)
      if (error instanceof UpstreamError) return reject(error)
      reject(new UpstreamError(failureOf(error), error.message, { cause: error }))
    })
    request.on('response', (message) => {
      const status = message.statusCode ?? 502
      if (status < 200 || status > 599) {
        message.destroy()
        return reject(new UpstreamError('protocol-error', `upstream answered with status ${status}`))
      }
      const headers = incomingHeaders(message.rawHeaders)
      const answer: UpstreamAnswer = { status, statusText: message.statusMessage ?? '', headers, body: null }
      if (isBodyless(r.method, status)) {
        message.resume()
        return resolve(answer)
      }
      if (r.bufferUpTo === undefined || declaredLength(headers) > r.bufferUpTo) {
        answer.body = responseBody(message)
        return resolve(answer)
      }
      readWhole(
        message,
        r.signal,
        (body) => {
          answer.body = body
          resolve(answer)
        },
        reject,
      )
    })
    if (r.body === null) request.end()
    else if (r.body instanceof Uint8Array) request.end(r.body)
    else void pumpBody(r.body, request)
  })
