import type { UpstreamConfig } from '../config/types.ts'
import { GatewayError } from '../errors.ts'
import type { UpstreamClient } from '../runtime/types.ts'
import type { Balancer } from './balancer.ts'
import { observeBody } from './body.ts'
import type { Exchange, Step } from './exchange.ts'
import { downstreamResponseHeaders, upstreamRequestHeaders } from './headers.ts'
import { UpstreamError } from './upstream-error.ts'

export interface ForwardTarget {
  upstream: UpstreamConfig
  balancer: Balancer
  stripPrefix: string | undefined
  /** "http" or "https": what the client used to reach this listener. */
  proto: string
}

/** The innermost step: one call to one endpoint, bodies streamed both ways. */
export function createForwarder(target: ForwardTarget, send: UpstreamClient): Step {
  const { balancer, stripPrefix, proto } = target
  const connectTimeoutMs = target.upstream.connectTimeoutMs
  return async function forward(exchange: Exchange): Promise<Response> {
    const request = exchange.request
    const endpoint = balancer.pick()
    exchange.endpoint = endpoint.url
    const headers = upstreamRequestHeaders(request.headers, {
      clientAddress: exchange.client.remoteAddress,
      proto,
      host: request.headers.get('host'),
      requestId: exchange.requestId,
    })
    const url = endpoint.url + upstreamPath(exchange.path, stripPrefix) + exchange.search
    const method = request.method
    let response: Response
    endpoint.active++
    try {
      response = await send({ url, method, headers, body: request.body, signal: exchange.signal, connectTimeoutMs })
    } catch (error) {
      throw asGatewayError(error, exchange, endpoint.url)
    } finally {
      endpoint.active--
    }
    const responseHeaders = downstreamResponseHeaders(response.headers, exchange.requestId)
    const status = response.status
    let body: ReadableStream<Uint8Array> | null = null
    if (response.body !== null) {
      if (method === 'HEAD' || status === 204 || status === 304) {
        response.body.cancel().catch(() => {})
      } else {
        body = observeBody(response.body, () => exchange.finish())
        exchange.finishesWithBody = true
      }
    }
    return new Response(body, { status, statusText: response.statusText, headers: responseHeaders })
  }
}

function upstreamPath(path: string, stripPrefix: string | undefined): string {
  if (stripPrefix === undefined || !path.startsWith(stripPrefix)) return path
  const rest = path.slice(stripPrefix.length)
  if (rest === '') return '/'
  return rest.startsWith('/') ? rest : `/${rest}`
}

function asGatewayError(error: unknown, exchange: Exchange, endpoint: string): GatewayError {
  const signal = exchange.signal
  if (signal.aborted && signal.reason instanceof GatewayError) return signal.reason
  if (error instanceof GatewayError) return error
  if (error instanceof UpstreamError) {
    return new GatewayError('upstream_unavailable', `upstream ${endpoint} failed: ${error.failure}`, { cause: error })
  }
  return new GatewayError('upstream_unavailable', `upstream ${endpoint} failed`, { cause: error })
}
