import type { Readable } from 'node:stream'

/**
 * A web stream over a Node Readable (a request or an HTTP/2 stream), with backpressure: the source
 * pauses while the web stream's queue is full. Readable.toWeb is avoided: on Node 20 a cancel in
 * mid-upload throws an uncaught ERR_INVALID_STATE (nodejs/node#54205). Once the web stream is
 * cancelled or settled, what the source still emits is dropped: an enqueue then would throw from
 * inside an event listener, which takes the process down. `first`: chunks the source gave before
 * (a body first collected to be handed over whole), queued ahead of what it gives next.
 */
export function nodeReadable(source: Readable, onCancel?: () => void, first?: readonly Uint8Array[]): ReadableStream<Uint8Array> {
  let open = true
  return new ReadableStream<Uint8Array>({
    start(controller) {
      if (first !== undefined && first.length > 0) {
        for (const chunk of first) controller.enqueue(chunk)
        if ((controller.desiredSize ?? 0) <= 0) source.pause()
      }
      source.on('data', (chunk: Buffer) => {
        if (!open || chunk.byteLength === 0) return
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength))
        if ((controller.desiredSize ?? 0) <= 0) source.pause()
      })
      source.once('end', () => {
        if (!open) return
        open = false
        controller.close()
      })
      const fail = (error: unknown) => {
        if (!open) return
        open = false
        controller.error(error)
      }
      source.once('error', fail)
      // A source destroyed before its end (a reset stream) ends no other way.
      source.once('close', () => fail(new Error('the stream was reset before its end')))
    },
    pull() {
      if (source.isPaused()) source.resume()
    },
    cancel() {
      open = false
      if (onCancel !== undefined) onCancel()
      else source.destroy()
    },
  })
}
