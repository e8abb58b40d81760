import type { Result, Router } from 'hono/router'

/**
 * Hono's router for a listener's app, whose one handler takes every method and path (the routes are
 * matched by Pillion's own router, router.ts): what matches is known once the handler is added.
 * Hono's default RegExpRouter matched each request's path against that one pattern, about 4% of the
 * binary's user-space instructions on a bare route.
 */
export class CatchAllRouter<T> implements Router<T> {
  readonly name = 'CatchAllRouter'
  #match: Result<T> = [[]]

  add(method: string, path: string, handler: T): void {
    if (method !== 'ALL' || path !== '/*' || this.#match[0].length > 0) {
      throw new Error(`a listener's app has one handler for every request; ${method} ${path} cannot be added`)
    }
    this.#match = [[[handler, {}]]]
  }

  match(): Result<T> {
    return this.#match
  }
}
