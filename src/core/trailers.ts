/**
 * Trailer fields of a Response, which the Fetch standard cannot carry: the response stays a plain
 * Response, and its trailers, a Promise<Headers> settled when its body has ended, ride beside it in
 * this side table keyed by the Response. Whoever builds a new Response from another (a layer that
 * wraps the body or edits headers) passes them on with `carryTrailers`; the runtime's HTTP/2 server
 * asks `trailersOf` for the final one. Weakly held: a Response that is dropped takes its entry along.
 */
const trailersByResponse = new WeakMap<Response, Promise<Headers>>()

/** Attaches trailers to a response; returns the response. */
export function withTrailers(response: Response, trailers: Promise<Headers>): Response {
  trailersByResponse.set(response, trailers)
  return response
}

/** The trailers a response will end with, or undefined when it has none to send. */
export function trailersOf(response: Response): Promise<Headers> | undefined {
  return trailersByResponse.get(response)
}

/** Gives `to` the trailers of `from`, if it has any; returns `to`. */
export function carryTrailers(from: Response, to: Response): Response {
  const trailers = trailersByResponse.get(from)
  if (trailers !== undefined) trailersByResponse.set(to, trailers)
  return to
}
