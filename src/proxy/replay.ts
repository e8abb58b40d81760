import type { Exchange } from './exchange.ts'

/**
 * Reads the request body into memory when it fits in maxBytes, so it can be sent again; a larger one
 * is handed on as a stream, its first bytes put back in front. Returns whether the body can be replayed.
 */
export async function bufferForReplay(exchange: Exchange, maxBytes: number): Promise<boolean> {
  const body = exchange.body
  if (body === null || body instanceof Uint8Array) return true
  const declared = exchange.request.headers.get('content-length')
  if (declared !== null && Number(declared) > maxBytes) return false
  // A layer above may have wrapped the client's stream (limits counts its bytes): exchange.body reads through it.
  const reader = body.getReader()
  const signal = exchange.signal
  const stopReading = () => void reader.cancel(signal.reason).catch(() => {})
  signal.addEventListener('abort', stopReading, { once: true })
  const chunks: Uint8Array[] = []
  let total = 0
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (signal.aborted) throw signal.reason
      if (done) break
      chunks.push(value)
      total += value.byteLength
      if (total > maxBytes) {
        exchange.resumedBody = resume(chunks, reader)
        return false
      }
    }
  } finally {
    signal.removeEventListener('abort', stopReading)
  }
  exchange.replayableBody = concat(chunks, total)
  return true
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!
  const bytes = new Uint8Array(total)
  let offset = 0
  for (const chunk of chunks) {
    bytes.set(chunk, offset)
    offset += chunk.byteLength
  }
  return bytes
}

function resume(head: Uint8Array[], rest: ReadableStreamDefaultReader<Uint8Array>): ReadableStream<Uint8Array> {
  let index = 0
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (index < head.length) return controller.enqueue(head[index++]!)
      const { done, value } = await rest.read()
      if (done) controller.close()
      else controller.enqueue(value)
    },
    cancel: (reason) => rest.cancel(reason),
  })
}
