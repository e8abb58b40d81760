import type { IncomingMessage, ServerResponse } from 'node:http'
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import { bodyBytesOf } from '../core/body.ts'
import type { Handler } from '../core/host.ts'
import { NodeHeaders } from './node-headers.ts'
import { ResponseClient } from './response-client.ts'

type NodeEnv = { incoming: unknown; outgoing: unknown }

/**
 * The fetch callback given to @hono/node-server: the request's headers are read straight from
 * node:http's rawHeaders (a NodeHeaders, which the forwarder copies and the upstream client sends
 * without ever building undici's Headers), and an answer whose body is bytes in hand is written
 * to the ServerResponse here, the way @hono/node-server writes such a Response, without the
 * header record and Response reads it would make on the way.
 */
export function nodeFetch(handler: Handler): (request: Request, env: NodeEnv) => Response | Promise<Response> {
  return (request, env) => {
    const incoming = env.incoming as IncomingMessage
    const outgoing = env.outgoing as ServerResponse
    Object.defineProperty(request, 'headers', { value: NodeHeaders.fromRaw(incoming.rawHeaders) })
    const answer = handler(request, new ResponseClient(incoming, outgoing))
    return answer instanceof Promise ? answer.then((response) => written(response, outgoing)) : answer
  }
}

const DEFAULT_CONTENT_TYPE = 'text/plain; charset=UTF-8'

/**
 * RESPONSE_ALREADY_SENT (@hono/node-server's way of saying it is done) once the answer is written;
 * the response itself for @hono/node-server to write when it is not bytes in hand, or cannot be
 * written here. Headers, Content-Type default and Content-Length as @hono/node-server's
 * responseViaCache writes them for a Uint8Array body.
 */
function written(response: Response, outgoing: ServerResponse): Response {
  const bytes = bodyBytesOf(response)
  if (bytes === undefined || outgoing.headersSent) return response
  const headers = response.headers
  const fields = headers instanceof NodeHeaders ? headers.flat() : flatOf(headers)
  let cookies: string[] | undefined
  let hasType = false
  let hasLength = false
  let kept = 0
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!
    if (name === 'set-cookie') {
      ;(cookies ??= []).push(name, fields[i + 1]!)
      continue
    }
    if (name === 'content-type') hasType = true
    else if (name === 'content-length') hasLength = true
    fields[kept++] = name
    fields[kept++] = fields[i + 1]!
  }
  fields.length = kept
  if (cookies !== undefined) fields.push(...cookies)
  if (!hasType) fields.push('content-type', DEFAULT_CONTENT_TYPE)
  if (!hasLength) fields.push('Content-Length', String(bytes.byteLength))
  try {
    outgoing.writeHead(response.status, fields)
  } catch {
    // Nothing was sent: @hono/node-server writes it, and answers what it cannot write as it always did.
    return response
  }
  outgoing.end(bytes)
  return RESPONSE_ALREADY_SENT
}

function flatOf(headers: Headers): string[] {
  const flat: string[] = []
  for (const [name, value] of headers) flat.push(name, value)
  return flat
}
