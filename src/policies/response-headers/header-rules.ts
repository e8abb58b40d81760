import { GatewayError } from '../../core/errors.ts'
import type { Exchange, Layer, Step } from '../../proxy/exchange.ts'
import { compileEdits, editsNothing, headerEditsSchema, type CompiledEdits, type HeaderEdits } from '../shared/header-edits.ts'
import type { HeaderTemplate } from '../shared/header-template.ts'
import type { PolicyModule, RouteContext } from '../policy.ts'
import { carryTrailers } from '../../core/trailers.ts'

/**
 * [routes.response_headers]: `set`, `add` and `remove` on the answer the client gets, the gateway's
 * own error answers included, with the same variables as request_headers.
 */
export const responseHeadersPolicy: PolicyModule<HeaderEdits, 'responseHeaders'> = {
  key: 'response_headers',
  field: 'responseHeaders',
  schema: headerEditsSchema('{ "cache-control" = "no-store" }'),
  builtInDefault: undefined,
  layer: (edits, context) => (editsNothing(edits) ? undefined : responseHeadersLayer(edits, context)),
}

/**
 * Edits every answer of the route once the rest of the chain has made it: removes, then sets, then
 * adds. A gateway error (401 from jwt, 502 from forward, 503 from the breaker) is not a Response yet:
 * the edits go into its headers, which the listener puts on the JSON answer, as the breaker's
 * Retry-After does. Values are read after the chain ran, so `${upstream}` is the one a split chose.
 *
 * @example responseHeadersLayer({ set: { 'cache-control': 'no-store' }, add: {}, remove: ['server'] }, context)
 */
export function responseHeadersLayer(edits: HeaderEdits, context: RouteContext): Layer {
  const compiled = compileEdits(edits, context)
  return (next: Step) =>
    async function responseHeaders(exchange: Exchange): Promise<Response> {
      let response: Response
      try {
        response = await next(exchange)
      } catch (error) {
        if (error instanceof GatewayError) error.headers = editedRecord(compiled, error.headers ?? {}, exchange)
        throw error
      }
      try {
        // In place, as strip_response_headers does: the same object keeps the forwarder's buffered answer recognised.
        applyEdits(compiled, response.headers, exchange)
        return response
      } catch {
        // Immutable headers (a Response straight from fetch): a copy with the edits. The first change throws, so none was made.
        const headers = new Headers(response.headers)
        applyEdits(compiled, headers, exchange)
        return carryTrailers(response, new Response(response.body, { status: response.status, statusText: response.statusText, headers }))
      }
    }
}

const valueOf = (template: HeaderTemplate, exchange: Exchange): string => (typeof template === 'string' ? template : template(exchange))

function applyEdits(edits: CompiledEdits, headers: Headers, exchange: Exchange): void {
  for (const name of edits.remove) headers.delete(name)
  for (const [name, template] of edits.set) {
    const value = valueOf(template, exchange)
    if (value === '') headers.delete(name)
    else headers.set(name, value)
  }
  for (const [name, template] of edits.add) {
    const value = valueOf(template, exchange)
    if (value !== '') headers.append(name, value)
  }
}

/**
 * The edits on an error's headers, a record of lower-case names: an added value joins the one there
 * with ", " as Headers.append would (so two set-cookie values would share one header here).
 */
function editedRecord(edits: CompiledEdits, headers: Record<string, string>, exchange: Exchange): Record<string, string> {
  const edited = { ...headers }
  for (const name of edits.remove) delete edited[name]
  for (const [name, template] of edits.set) {
    const value = valueOf(template, exchange)
    if (value === '') delete edited[name]
    else edited[name] = value
  }
  for (const [name, template] of edits.add) {
    const value = valueOf(template, exchange)
    if (value === '') continue
    const before = edited[name]
    edited[name] = before === undefined ? value : `${before}, ${value}`
  }
  return edited
}
