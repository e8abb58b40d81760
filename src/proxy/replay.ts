import type { Exchange, RequestBody } from './exchange.ts'
import { concatBytes } from '../core/body.ts'

/** No body, or one already in memory: it can go again as it is, with nothing to read first. */
export function replayableAsIs(body: RequestBody): body is Uint8Array | null {
  return body === null || body instanceof Uint8Array
}

/**
 * Reads the request body into memory when it fits in maxBytes, so it can be sent again; a larger one
 * is handed on as a stream, its first bytes put back in front. Returns whether the body can be replayed.
 */
export async function bufferForReplay(exchange: Exchange, maxBytes: number): Promise<boolean> {
  const body = exchange.body
  if (replayableAsIs(body)) return true
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
 * For a call whose body may stream for as long as the call lasts (gRPC's client and bidi streams):
 * the body goes upstream as it arrives, never held back, and a copy is kept up to maxBytes. After a
 * failed try, `replayable()` says whether the whole body can be sent again: it must have ended within
 * maxBytes, counting what the client had already sent when the try failed (a unary call's request is
 * complete at once; a stream still open is never replayed, as Envoy never replays one).
 */
export function copyWhileStreaming(exchange: Exchange, maxBytes: number): { replayable(): Promise<boolean> } {
  const body = exchange.body
  if (replayableAsIs(body)) return { replayable: async () => true }
  const reader = body.getReader()
  const chunks: Uint8Array[] = []
  let total = 0
  let ended = false
  let tooLarge = false
  const keep = (chunk: Uint8Array) => {
    if (tooLarge) return
    total += chunk.byteLength
    if (total > maxBytes) {
      tooLarge = true
      chunks.length = 0
    } else chunks.push(chunk)
  }
  // One reader for both the tries and the copy: each chunk is read once, kept, and delivered once.
  const undelivered: Uint8Array[] = []
  let inFlight: Promise<void> | undefined
  const pump = () =>
    (inFlight ??= reader.read().then(({ done, value }) => {
      inFlight = undefined
      if (done) ended = true
      else {
        keep(value)
        undelivered.push(value)
      }
    }))
  exchange.resumedBody = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (undelivered.length === 0 && !ended) await pump()
      const chunk = undelivered.shift()
      if (chunk !== undefined) controller.enqueue(chunk)
      else if (ended) controller.close()
    },
    // A failed try cancels its body: the client's stream stays readable for the copy and a next try.
    cancel: () => {},
  })
  return {
    async replayable() {
      try {
        // Only what the client has already sent: a stream that is still open is not waited for.
        while (!ended && !tooLarge) if ((await Promise.race([pump(), nextTurn()])) === NOT_YET) return false
      } catch {
        return false
      }
      if (tooLarge) return false
      exchange.resumedBody = undefined
      exchange.replayableBody = concatBytes(chunks, total)
      return true
    },
  }
}

const NOT_YET = Symbol('not yet')

/** Resolves after the bytes the runtime already has for this request have been delivered. */
function nextTurn(): Promise<typeof NOT_YET> {
  return new Promise((resolve) => setTimeout(resolve, 0, NOT_YET))
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

