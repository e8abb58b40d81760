import { Context, type MiddlewareHandler } from 'hono'
import { GatewayError } from '../errors.ts'
import type { Exchange, Step } from '../proxy/exchange.ts'

/**
 * Runs one of Hono's own middleware (cors, secureHeaders) around the rest of a route's chain. The
 * chain is not a Hono app, so the middleware gets a bare Context on the client's request. An
 * error from below becomes the listener's JSON answer later; the headers the middleware set on
 * its stand-in response travel with the error, so error answers carry them too.
 */
export async function aroundChain(middleware: MiddlewareHandler, exchange: Exchange, next: Step): Promise<Response> {
  const c = new Context(exchange.request)
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
