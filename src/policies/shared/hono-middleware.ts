import { Context, type MiddlewareHandler } from 'hono'
import { GatewayError } from '../../core/errors.ts'
import type { Exchange, Step } from '../../proxy/exchange.ts'
import { carryTrailers } from '../../core/trailers.ts'

/**
 * A Context whose response is the chain's own Response, edited in place. Hono's Context copies
 * the response into a new one when a middleware set headers before calling next() (cors does)
 * and again on c.header() afterwards; each copy reads `response.body`, which on Node turns a light
 * Response into a full undici one and breaks the forwarder's "this is my buffered answer" check.
 * Headers set early go onto the real response once it exists, as Hono would carry them over.
 */
class ChainContext extends Context {
  #response: Response | undefined
  #placeholder: Response | undefined

  override get res(): Response {
    return (this.#response ??= this.#placeholder = new Response(null))
  }

  override set res(response: Response | undefined) {
    const placeholder = this.#placeholder
    if (response !== undefined && placeholder !== undefined && placeholder !== response) {
      this.#placeholder = undefined
      response = carryHeaders(placeholder.headers, response)
    }
    this.#response = response
  }

  override header = (name: string, value?: string, options?: { append?: boolean }): void => {
    const headers = this.res.headers
    if (value === undefined) headers.delete(name)
    else if (options?.append) headers.append(name, value)
    else headers.set(name, value)
  }
}

/** Hono's carry-over rule (content-type stays the answer's, cookies are added), in place when the headers allow it. */
function carryHeaders(early: Headers, response: Response): Response {
  let target = response
  try {
    apply(early, target.headers)
  } catch {
    // Immutable headers (a Response straight from fetch): copy, as Hono does.
    target = carryTrailers(response, new Response(response.body, response))
    apply(early, target.headers)
  }
  return target
}

function apply(early: Headers, headers: Headers): void {
  for (const [name, value] of early) {
    if (name === 'content-type') continue
    if (name === 'set-cookie') headers.append(name, value)
    else headers.set(name, value)
  }
}

/**
 * Runs one of Hono's own middleware (cors, secureHeaders) around the rest of a route's chain. The
 * chain is not a Hono app, so the middleware gets a bare Context on the client's request. An
 * error from below becomes the listener's JSON answer later; the headers the middleware set on
 * its stand-in response travel with the error, so error answers carry them too.
 */
export async function aroundChain(middleware: MiddlewareHandler, exchange: Exchange, next: Step): Promise<Response> {
  const c = new ChainContext(exchange.request)
  let failure: unknown
  let failed = false
  const answer = await middleware(c, async () => {
    try {
      c.res = await next(exchange)
    } catch (error) {
      failed = true
      failure = error
      c.res = new Response(null)
    }
  })
  if (!failed) return answer ?? c.res
  if (failure instanceof GatewayError) {
    const headers: Record<string, string> = { ...failure.headers }
    for (const [name, value] of c.res.headers) if (name !== 'content-type' && name !== 'content-length') headers[name] ??= value
    failure.headers = headers
  }
  throw failure
}
