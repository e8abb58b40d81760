import type { Exchange } from '../../proxy/exchange.ts'

/**
 * Header values with variables, `"${jwt.sub}@${upstream}"`, compiled once at load into a constant or
 * a small function of the exchange: no parsing on the per-request path. `$${` is a literal `${`.
 * request_headers and response_headers use it.
 */

/** The variables a value may use; `${jwt.CLAIM}` and `${header.NAME}` take a name after the dot. */
const TEMPLATE_VARIABLES = ['client_ip', 'request_id', 'route', 'upstream', 'consumer', 'method', 'path', 'jwt.CLAIM', 'header.NAME'] as const

/** What a template reads that is fixed for the route it is built for. */
export interface TemplateRoute {
  /** The route's name: `${route}`. */
  route: string
  /** The route's own upstream: `${upstream}` unless a split chose another (exchange.target). */
  upstream: string
}

/** A value for one request: a constant when the text has no variables. '' when it comes out empty. */
export type HeaderTemplate = string | ((exchange: Exchange) => string)

type Simple = 'client_ip' | 'request_id' | 'route' | 'upstream' | 'consumer' | 'method' | 'path'
type Read = { kind: Exclude<Simple, 'route'> } | { kind: 'jwt'; claim: string; path: readonly string[] } | { kind: 'header'; name: string }
type Part = { kind: 'text'; text: string } | { kind: 'route' } | Read

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/i
const SIMPLE = new Set<string>(['client_ip', 'request_id', 'route', 'upstream', 'consumer', 'method', 'path'] satisfies Simple[])
const KNOWN = TEMPLATE_VARIABLES.map((name) => `\${${name}}`).join(', ')
const LITERAL_HINT = 'write $${ for a literal ${'

/** The parts of a header value, or why it is not one; at load only. */
export function parseTemplate(text: string): Part[] | { problem: string } {
  const parts: Part[] = []
  let literal = ''
  let at = 0
  while (at < text.length) {
    const open = text.indexOf('${', at)
    if (open === -1) {
      literal += text.slice(at)
      break
    }
    if (open > 0 && text[open - 1] === '$') {
      // "$${" is a literal "${"; the "$" before it is already in the literal.
      literal += `${text.slice(at, open - 1)}\${`
      at = open + 2
      continue
    }
    literal += text.slice(at, open)
    const close = text.indexOf('}', open + 2)
    if (close === -1) return { problem: `"\${" at character ${open + 1} is not closed by "}" (${LITERAL_HINT})` }
    const variable = variablePart(text.slice(open + 2, close))
    if ('problem' in variable) return variable
    if (literal !== '') parts.push({ kind: 'text', text: literal })
    literal = ''
    parts.push(variable)
    at = close + 1
  }
  if (literal !== '') parts.push({ kind: 'text', text: literal })
  return parts
}

function variablePart(name: string): Part | { problem: string } {
  if (SIMPLE.has(name)) return { kind: name as Simple }
  if (name.startsWith('jwt.')) {
    const claim = name.slice(4)
    const path = claim.split('.')
    if (path.some((segment) => segment === '')) return { problem: `\${${name}}: expected a claim name or a dotted path like \${jwt.realm_access.roles} after "jwt."` }
    return { kind: 'jwt', claim, path }
  }
  if (name.startsWith('header.')) {
    const header = name.slice(7)
    if (!TOKEN.test(header)) return { problem: `\${${name}}: expected a header name like \${header.x-tenant} after "header."` }
    return { kind: 'header', name: header.toLowerCase() }
  }
  return { problem: `unknown variable \${${name}}; expected one of ${KNOWN} (${LITERAL_HINT})` }
}

/**
 * The template for a value that parseTemplate accepted (the schema checked it at load). `${route}`
 * and text fold into constants; a value with no variable left is the string itself.
 *
 * @example compileTemplate('${jwt.sub}@${route}', { route: 'orders', upstream: 'app' })(exchange) // "alice@orders"
 */
export function compileTemplate(text: string, route: TemplateRoute): HeaderTemplate {
  const parsed = parseTemplate(text)
  if ('problem' in parsed) throw new Error(`header value ${JSON.stringify(text)}: ${parsed.problem}`)
  const pieces: Array<string | ((exchange: Exchange) => string)> = []
  for (const part of parsed) {
    const piece = part.kind === 'route' ? route.route : part.kind === 'text' ? part.text : reader(part, route)
    const last = pieces.length - 1
    if (typeof piece === 'string' && typeof pieces[last] === 'string') pieces[last] += piece
    else pieces.push(piece)
  }
  if (pieces.length === 0) return ''
  if (pieces.length === 1) return pieces[0]!
  if (pieces.length === 2) {
    const [a, b] = pieces
    if (typeof a === 'string') return (exchange) => a + (b as (exchange: Exchange) => string)(exchange)
    if (typeof b === 'string') return (exchange) => a!(exchange) + b
  }
  return function headerValue(exchange: Exchange): string {
    let value = ''
    for (const piece of pieces) value += typeof piece === 'string' ? piece : piece(exchange)
    return value
  }
}

/** How one variable is read from the exchange; values that are not printable ASCII are escaped. */
function reader(part: Read, route: TemplateRoute): (exchange: Exchange) => string {
  switch (part.kind) {
    case 'client_ip':
      return (exchange) => exchange.client.remoteAddress
    case 'request_id':
      return (exchange) => exchange.requestId
    case 'upstream': {
      const own = route.upstream
      return (exchange) => exchange.target?.config.name ?? own
    }
    case 'consumer':
      return (exchange) => exchange.consumer ?? ''
    case 'method':
      return (exchange) => exchange.request.method
    case 'path':
      // The normalized path the route matched, without the query; printable ASCII, as the listener normalizes it.
      return (exchange) => exchange.path
    case 'jwt': {
      const { claim, path } = part
      return (exchange) => asHeaderValue(claimAt(exchange.claims, claim, path)) ?? ''
    }
    case 'header': {
      const name = part.name
      return (exchange) => asHeaderValue(exchange.request.headers.get(name)) ?? ''
    }
  }
}

/**
 * A verified claim by its name, else by its dotted path (`realm_access.roles`): a claim whose own name
 * has dots (`https://example.com/roles`) is found by that name first. Own properties only, so
 * `${jwt.constructor}` is no claim.
 */
export function claimAt(claims: Record<string, unknown> | undefined, claim: string, path: readonly string[]): unknown {
  if (claims === undefined) return undefined
  if (Object.hasOwn(claims, claim)) return claims[claim]
  if (path.length === 1) return undefined
  let value: unknown = claims
  for (const segment of path) {
    if (typeof value !== 'object' || value === null || !Object.hasOwn(value, segment)) return undefined
    value = (value as Record<string, unknown>)[segment]
  }
  return value
}

const PRINTABLE = /^[\x20-\x7e]*$/
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g

/**
 * A value as a header value: strings as they are when printable ASCII, anything else percent-encoded
 * (objects and arrays as JSON first); null when there is none. A client or a token can put anything in
 * a claim or a header, and none of it may break the header it is copied into.
 */
export function asHeaderValue(value: unknown): string | null {
  if (value === undefined || value === null) return null
  const text = typeof value === 'string' ? value : typeof value === 'object' ? JSON.stringify(value) : String(value)
  if (PRINTABLE.test(text)) return text
  // encodeURIComponent throws on a lone surrogate, which a JSON string may hold ("\ud800").
  return encodeURIComponent(text.replace(LONE_SURROGATE, '\ufffd'))
}
