/**
 * A runtime may hand the core Headers of its own making (Node: a plain list instead of undici's
 * Headers, src/runtime/node-headers.ts). Such headers copy themselves through this method, so a
 * copy stays of their kind instead of going through the Headers constructor.
 */
export const COPY_HEADERS = Symbol.for('pillion.copyHeaders')

/** Whether the headers are a runtime's own kind, that copies itself. */
export function copiesItself(headers: Headers): boolean {
  return COPY_HEADERS in headers
}

export function copyHeaders(source: Headers): Headers {
  const copy = (source as { [COPY_HEADERS]?: () => Headers })[COPY_HEADERS]
  return copy === undefined ? new Headers(source) : copy.call(source)
}

/** Such headers may also drop several names in one pass, instead of one scan per name. */
export const DELETE_HEADERS = Symbol.for('pillion.deleteHeaders')

/** Deletes every header whose name is in `names` (lower-case). */
export function deleteHeaders(headers: Headers, names: ReadonlySet<string>): void {
  const drop = (headers as { [DELETE_HEADERS]?: (names: ReadonlySet<string>) => void })[DELETE_HEADERS]
  if (drop !== undefined) return drop.call(headers, names)
  for (const name of names) headers.delete(name)
}
