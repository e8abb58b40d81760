import type { Readable } from 'node:stream'

/**
 * A web stream over a Node Readable (a request or an HTTP/2 stream), with backpressure: the source
 * pauses while the web stream's queue is full. Readable.toWeb is avoided: on Node 20 a cancel in
 * mid-upload throws an uncaught ERR_INVALID_STATE (nodejs/node#54205).
 */
export function nodeReadable(source: Readable, onCancel?: () => void): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      source.on('data', (chunk: Buffer) => {
        if (chunk.byteLength === 0) return
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength))
        if ((controller.desiredSize ?? 0) <= 0) source.pause()
      })
      source.once('end', () => controller.close())
      source.once('error', (error) => controller.error(error))
      // A source destroyed before its end (a reset stream) ends no other way.
      source.once('close', () => {
        if (!source.readableEnded) {
          try {
            controller.error(new Error('the stream was reset before its end'))
          } catch {}
        }
      })
    },
    pull() {
      if (source.isPaused()) source.resume()
    },
    cancel() {
      if (onCancel !== undefined) onCancel()
      else source.destroy()
    },
  })
}
