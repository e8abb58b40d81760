import type { IncomingHttpHeaders } from 'node:http2'

/**
 * How a runtime turns node:http2's header object (a request's or an answer's, or trailers) into
 * Headers, pseudo-headers (":status", ":path", …) left out. Bun and Deno build their own Headers;
 * Node builds a NodeHeaders, which costs a fraction of undici's (node-headers.ts).
 */
export type FieldsToHeaders = (fields: IncomingHttpHeaders) => Headers

export const webHeaders: FieldsToHeaders = (fields) => {
  const headers = new Headers()
  for (const name in fields) {
    if (name.charCodeAt(0) === 58) continue // ":" pseudo-headers
    const value = fields[name]
    if (typeof value === 'string') headers.append(name, value)
    else if (value !== undefined) for (const one of value) headers.append(name, one)
  }
  return headers
}
