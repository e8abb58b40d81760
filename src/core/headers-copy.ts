/**
 * A runtime may hand the core Headers of its own making (Node: a plain list instead of undici's
 * Headers, src/runtime/node-headers.ts). Such headers copy themselves through this method, so a
 * copy stays of their kind instead of going through the Headers constructor.
 */
export const COPY_HEADERS = Symbol.for('pillion.copyHeaders')

export function copyHeaders(source: Headers): Headers {
  const copy = (source as { [COPY_HEADERS]?: () => Headers })[COPY_HEADERS]
  return copy === undefined ? new Headers(source) : copy.call(source)
}
