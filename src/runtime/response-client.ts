import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2'
import type { ClientInfo } from '../core/host.ts'

/** The client of one request on a node:http or node:http2 server: its address, and its going away seen on the response's 'close'. */
export class ResponseClient implements ClientInfo {
  readonly remoteAddress: string
  readonly #outgoing: ServerResponse | Http2ServerResponse

  constructor(incoming: IncomingMessage | Http2ServerRequest, outgoing: ServerResponse | Http2ServerResponse) {
    this.remoteAddress = incoming.socket?.remoteAddress ?? ''
    this.#outgoing = outgoing
  }

  /** 'close' before the response finished is what @hono/node-server itself reads as the client leaving. */
  watchGone(listener: { handleEvent(): void }): () => void {
    const outgoing = this.#outgoing
    const onClose = () => {
      if (!outgoing.writableFinished) listener.handleEvent()
    }
    outgoing.once('close', onClose)
    return () => outgoing.off('close', onClose)
  }
}
