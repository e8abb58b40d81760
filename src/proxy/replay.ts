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
  const head = await readHead(exchange, body, (total) => total > maxBytes)
  if (head.rest !== undefined) {
    exchange.resumedBody = resume(head.chunks, head.rest)
    return false
  }
  exchange.replayableBody = concatBytes(head.chunks, head.total)
  return true
}

/**
 * The first maxBytes of the request body (fewer when it is shorter), read without losing any: a body
 * that ended is kept whole for sending upstream, a longer one goes on as a stream with what was read
 * put back in front. ext_authz shows these bytes to the authorizer.
 */
export async function peekBody(exchange: Exchange, maxBytes: number): Promise<Uint8Array> {
  const body = exchange.body
  if (body === null) return new Uint8Array(0)
  if (body instanceof Uint8Array) return body.subarray(0, maxBytes)
  const head = await readHead(exchange, body, (total) => total >= maxBytes)
  const bytes = concatBytes(head.chunks, head.total)
  if (head.rest === undefined) exchange.replayableBody = bytes
  else exchange.resumedBody = resume(head.chunks, head.rest)
  return bytes.subarray(0, maxBytes)
}

/** Reads chunks until `enough` says so (rest: the reader, to go on with) or the body ends (rest undefined). */
async function readHead(
  exchange: Exchange,
  body: ReadableStream<Uint8Array>,
  enough: (total: number) => boolean,
): Promise<{ chunks: Uint8Array[]; total: number; rest?: ReadableStreamDefaultReader<Uint8Array> }> {
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
      if (done) return { chunks, total }
      chunks.push(value)
      total += value.byteLength
      if (enough(total)) return { chunks, total, rest: reader }
    }
  } finally {
    signal.removeEventListener('abort', stopReading)
  }
}

/** The chunks as one array (the chunk itself when there is one). */
export function concatBytes(chunks: Uint8Array[], total: number): Uint8Array<ArrayBuffer> {
  if (chunks.length === 1) return chunks[0]! as Uint8Array<ArrayBuffer>
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

