import type { Exchange, Layer, Step, UpstreamHeaderEdit } from '../../proxy/exchange.ts'
import { compileEdits, editsNothing, headerEditsSchema, type HeaderEdits } from '../shared/header-edits.ts'
import type { PolicyModule, RouteContext } from '../policy.ts'

/**
 * [routes.request_headers]: `set`, `add` and `remove` on what is sent upstream, with variables
 * (`${jwt.sub}`, `${consumer}`, `${client_ip}`, ...) compiled at load.
 */
export const requestHeadersPolicy: PolicyModule<HeaderEdits, 'requestHeaders'> = {
  key: 'request_headers',
  field: 'requestHeaders',
  schema: headerEditsSchema('{ "x-user" = "${jwt.sub}" }'),
  builtInDefault: undefined,
  layer: (edits, context) => (editsNothing(edits) ? undefined : requestHeadersLayer(edits, context)),
}

type EditFor = UpstreamHeaderEdit | ((exchange: Exchange) => UpstreamHeaderEdit | undefined)

/**
 * Pushes the route's edits onto the exchange's upstream header edits, which the forwarder applies after
 * the proxy's own headers (X-Forwarded-*, Via): removes first, then sets, then adds, Envoy's order.
 * Edits with constant values are made once here and pushed as they are on every request; a value that
 * comes out empty removes the header (set) or adds nothing (add), so a client's own `x-user` never
 * reaches the upstream when the token has no `sub`.
 *
 * @example requestHeadersLayer({ set: { 'x-user': '${jwt.sub}' }, add: {}, remove: ['cookie'] }, context)
 */
export function requestHeadersLayer(edits: HeaderEdits, context: RouteContext): Layer {
  const compiled = compileEdits(edits, context)
  const plan: EditFor[] = compiled.remove.map((name): UpstreamHeaderEdit => [name, null])
  for (const [name, value] of compiled.set) {
    if (typeof value === 'string') plan.push([name, value])
    else plan.push((exchange) => [name, value(exchange) || null])
  }
  for (const [name, value] of compiled.add) {
    if (typeof value === 'string') plan.push([name, value, 'append'])
    else
      plan.push((exchange) => {
        const text = value(exchange)
        return text === '' ? undefined : [name, text, 'append']
      })
  }
  return (next: Step) =>
    function requestHeaders(exchange: Exchange): Promise<Response> {
      const edits = (exchange.upstreamHeaderEdits ??= [])
      for (const step of plan) {
        const edit = typeof step === 'function' ? step(exchange) : step
        if (edit !== undefined) edits.push(edit)
      }
      return next(exchange)
    }
}
