/** How an upstream call failed at the transport level; adapters translate their runtime's errors into these. */
export type UpstreamFailure = 'connect-failure' | 'connect-timeout' | 'reset' | 'protocol-error'

export class UpstreamError extends Error {
  readonly failure: UpstreamFailure
  constructor(failure: UpstreamFailure, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'UpstreamError'
    this.failure = failure
  }
}
