import { GatewayError } from '../core/errors.ts'
import type { UpstreamAnswer, UpstreamClient, UpstreamRequest } from '../core/host.ts'
import { upgradeResponse, type WebSocketConnector, type WebSocketHandshake } from '../core/websocket.ts'
import type { Exchange, Step } from './exchange.ts'
import { fieldOverrides, ForwardedFields, toDownstream, upstreamRequestHeaders, type ForwardedFor } from './headers.ts'
import { copiesItself } from '../core/headers-copy.ts'
import type { Endpoint } from '../upstream/balancer.ts'
import type { UpstreamRuntime } from '../upstream/upstream.ts'
import { UpstreamError } from '../core/upstream-error.ts'
import { withTrailers } from '../core/trailers.ts'
import { isGrpcServerFailure } from '../core/grpc.ts'
import { withBodyBytes } from '../core/body.ts'
import type { Abortable } from '../core/cancel.ts'

export interface ForwardTarget {
  upstream: UpstreamRuntime
  stripPrefix: string | undefined
  /** The route's rewrite, compiled; applied after strip_prefix. */
  rewrite?: (path: string) => string
  /** "http" or "https": what the client used to reach this listener. */
  proto: string
  /** Try a bodiless idempotent request once more on another endpoint when its connect failed. */
  retryConnectFailure?: boolean
}

/** Methods a connect failure may be retried for: it never reached the service, and these may repeat anyway. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'])

/**
 * The innermost step: one try against one endpoint, bodies streamed both ways. The body comes back
 * raw, so a layer may still discard it (a retry); only the final response is watched to its end.
 */
export function createForwarder(target: ForwardTarget, send: UpstreamClient, connectWebSocket?: WebSocketConnector): Step {
  const { upstream, stripPrefix, proto, rewrite, retryConnectFailure = false } = target
  const connectTimeoutMs = upstream.config.connectTimeoutMs
  const noEndpoints = `upstream ${upstream.config.name} has no endpoints`
  const unavailable = { failure: 'connect-failure', detail: noEndpoints } as const
  /** `instead` is the other endpoint of the one retry after a connect failure (the step itself takes one argument). */
  return async function forward(exchange: Exchange, instead?: Endpoint): Promise<Response> {
    const request = exchange.request
    exchange.upstream = upstream.config.name
    const endpoint = instead ?? upstream.pick(exchange.tried)
    if (endpoint === undefined) throw new GatewayError('upstream_unavailable', 'the upstream has no endpoint available', unavailable)
    exchange.endpoint = endpoint.url
    exchange.tried?.push(endpoint)
    exchange.attempts++
    const forwarded = { clientAddress: exchange.client.remoteAddress, proto, host: request.headers.get('host'), requestId: exchange.requestId }
    const stripped = upstreamPath(exchange.path, stripPrefix)
    const url = endpoint.url + (rewrite === undefined ? stripped : rewrite(stripped)) + exchange.search
    if (exchange.websocket !== undefined) return forwardWebSocket(exchange, endpoint, url, upstreamHeaders(exchange, forwarded))
    const method = request.method
    const signal = exchange.attemptSignal
    const edits = exchange.upstreamHeaderEdits
    const overrides = edits === undefined ? undefined : fieldOverrides(edits)
    // A runtime's own kind of Headers (Node's) copies and edits itself cheaply: the fields are for the others.
    const upstreamRequest: UpstreamRequest =
      exchange.grpcDeadline || (edits !== undefined && overrides === undefined) || copiesItself(request.headers)
        ? { url, method, headers: upstreamHeaders(exchange, forwarded), body: exchange.body, signal, connectTimeoutMs, bufferUpTo: SMALL_BODY_BYTES }
        : new FieldsRequest(url, method, new ForwardedFields(request.headers, forwarded, overrides), exchange.body, signal, connectTimeoutMs)
    let answer: UpstreamAnswer
    const sentAt = performance.now()
    endpoint.active++
    try {
      // A small body is read whole while the try's signal still guards it: its end is then known, and
      // the final answer needs no stream wrapper (NGINX buffers responses by default too).
      answer = await send(upstreamRequest)
    } catch (error) {
      endpoint.active--
      const failure = asGatewayError(error, signal, endpoint.url)
      if (countsAgainstEndpoint(failure)) upstream.report(endpoint, false)
      const other = retryConnectFailure && instead === undefined && failure.failure === 'connect-failure' ? otherEndpoint(exchange, endpoint) : undefined
      if (other !== undefined) return forward(exchange, other)
      throw failure
    }
    endpoint.active--
    exchange.upstreamMs = performance.now() - sentAt
    const { status, body } = answer
    // An HTTP/2 answer may be a gRPC failure behind a 200: counted as the 5xx gRPC maps it to (as Envoy does).
    upstream.report(endpoint, status < 500 && (answer.trailers === undefined || !isGrpcServerFailure(answer.headers)))
    // The Response's own headers are its copy of the answer's (which may be immutable): edit those.
    const response = new Response(body, { status, statusText: answer.statusText, headers: answer.headers })
    toDownstream(response.headers, exchange.requestId, answer.endToEnd)
    if (answer.trailers !== undefined) withTrailers(response, answer.trailers)
    if (body instanceof Uint8Array) {
      exchange.buffered = { response, bytes: body.byteLength }
      withBodyBytes(response, body)
    }
    return response
  }

  /** The Headers the upstream sees, with the layers' edits and the gRPC deadline left. */
  function upstreamHeaders(exchange: Exchange, forwarded: ForwardedFor): Headers {
    const headers = upstreamRequestHeaders(exchange.request.headers, forwarded)
    if (exchange.upstreamHeaderEdits !== undefined) {
      for (const [name, value, mode] of exchange.upstreamHeaderEdits) {
        if (value === null) headers.delete(name)
        else if (mode === 'append') headers.append(name, value)
        else headers.set(name, value)
      }
    }
    if (exchange.grpcDeadline) headers.set('grpc-timeout', `${Math.max(1, Math.ceil(exchange.deadline - performance.now()))}m`)
    return headers
  }

  /** Where a request whose connect failed goes next: only a first try, bodiless and idempotent, to a different endpoint. */
  function otherEndpoint(exchange: Exchange, failed: Endpoint): Endpoint | undefined {
    if (exchange.attempts !== 1 || exchange.body !== null || !IDEMPOTENT.has(exchange.request.method)) return undefined
    const other = upstream.pick([failed])
    return other === failed ? undefined : other
  }

  /**
   * One try at the upstream side of a WebSocket: the runtime opens it with the forwarded handshake;
   * a 101 becomes the session the listener's adapter bridges, any other answer is passed on. Failures
   * count for outlier detection and breakers, and retries may move on, as for any request.
   */
  async function forwardWebSocket(exchange: Exchange, endpoint: Endpoint, url: string, headers: Headers): Promise<Response> {
    if (connectWebSocket === undefined) throw new GatewayError('upstream_unavailable', 'this runtime cannot open WebSockets upstream')
    // Extensions (permessage-deflate) are negotiated by each hop for itself; the bridge relays plain messages.
    headers.delete('sec-websocket-extensions')
    const signal = exchange.attemptSignal
    let handshake: WebSocketHandshake
    const sentAt = performance.now()
    endpoint.active++
    try {
      handshake = await connectWebSocket({ url: `ws${url.slice(4)}`, headers, signal, connectTimeoutMs, tls: upstream.config.tls })
    } catch (error) {
      const failure = asGatewayError(error, signal, endpoint.url)
      if (countsAgainstEndpoint(failure)) upstream.report(endpoint, false)
      throw failure
    } finally {
      endpoint.active--
    }
    exchange.upstreamMs = performance.now() - sentAt
    if (!handshake.accepted) {
      const { status, statusText, body } = handshake.answer
      upstream.report(endpoint, status < 500)
      const response = new Response(body, { status, statusText, headers: handshake.answer.headers })
      toDownstream(response.headers, exchange.requestId)
      return response
    }
    upstream.report(endpoint, true)
    const terms = exchange.websocket!
    const session = { ...terms, upstream: handshake.upstream, route: exchange.route }
    exchange.session = session
    const clientHeaders = toDownstream(new Headers(handshake.upstream.headers), exchange.requestId)
    for (const name of HANDSHAKE_ONLY) clientHeaders.delete(name)
    return upgradeResponse(session, clientHeaders)
  }
}

/** Headers of the upstream's 101 that belong to its own handshake; the client's 101 gets its own. */
const HANDSHAKE_ONLY = ['sec-websocket-accept', 'sec-websocket-extensions', 'content-length']

/** A request sent with its fields as ForwardedFields: its Headers are built only if a client asks for them. */
class FieldsRequest implements UpstreamRequest {
  readonly url: string
  readonly method: string
  readonly fields: ForwardedFields
  readonly body: UpstreamRequest['body']
  readonly signal: Abortable
  readonly connectTimeoutMs: number
  readonly bufferUpTo = SMALL_BODY_BYTES
  /** Not private: the request may be read through an object over it (pipeline.ts). */
  builtHeaders: Headers | undefined = undefined

  constructor(url: string, method: string, fields: ForwardedFields, body: UpstreamRequest['body'], signal: Abortable, connectTimeoutMs: number) {
    this.url = url
    this.method = method
    this.fields = fields
    this.body = body
    this.signal = signal
    this.connectTimeoutMs = connectTimeoutMs
  }

  get headers(): Headers {
    return (this.builtHeaders ??= this.fields.toHeaders())
  }
}

/** Bodies up to this size with a declared length are read whole; larger or unsized ones stream. */
export const SMALL_BODY_BYTES = 64 * 1024

function upstreamPath(path: string, stripPrefix: string | undefined): string {
  if (stripPrefix === undefined || !path.startsWith(stripPrefix)) return path
  const rest = path.slice(stripPrefix.length)
  if (rest === '') return '/'
  return rest.startsWith('/') ? rest : `/${rest}`
}

/** A client that went away, or whose request body was malformed, says nothing about the endpoint. */
function countsAgainstEndpoint(failure: GatewayError): boolean {
  return failure.code !== 'client_closed' && failure.code !== 'bad_request'
}

function asGatewayError(error: unknown, signal: Abortable, endpoint: string): GatewayError {
  if (signal.aborted && signal.reason instanceof GatewayError) return signal.reason
  if (error instanceof GatewayError) return error
  // The client learns the kind of failure; the endpoint and the runtime's words go to the error log only.
  if (error instanceof UpstreamError) {
    const failure = error.failure === 'connect-timeout' ? 'connect-failure' : error.failure
    // The runtime's words say what was wrong (a refused WebSocket handshake names the upstream's status).
    const said = error.message === '' ? '' : ` (${error.message})`
    const detail = `upstream ${endpoint} failed: ${error.failure}${said}`
    return new GatewayError('upstream_unavailable', clientMessage(error.failure), { cause: error, failure, detail })
  }
  const detail = `upstream ${endpoint} failed: ${error instanceof Error ? error.message : String(error)}`
  return new GatewayError('upstream_unavailable', clientMessage('reset'), { cause: error, failure: 'reset', detail })
}

function clientMessage(failure: UpstreamError['failure']): string {
  const reached = failure !== 'connect-failure' && failure !== 'connect-timeout'
  return reached ? `the upstream failed (${failure})` : `the upstream could not be reached (${failure})`
}
