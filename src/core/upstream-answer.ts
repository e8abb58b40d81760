/** Facts about an upstream answer that every upstream client decides the same way. */

const BODYLESS_STATUS = new Set([204, 205, 304])

/** Whether an answer to this method with this status has no body, whatever its headers say. */
export function isBodyless(method: string, status: number): boolean {
  return method === 'HEAD' || BODYLESS_STATUS.has(status)
}

/** The Content-Length as a number; Infinity when it is missing or not a number (the body streams). */
export function declaredLength(headers: Headers): number {
  const declared = headers.get('content-length')
  if (declared === null) return Number.POSITIVE_INFINITY
  const length = Number(declared)
  return Number.isNaN(length) ? Number.POSITIVE_INFINITY : length
}
