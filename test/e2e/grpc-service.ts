import * as grpc from '@grpc/grpc-js'

/**
 * A gRPC service written by hand (no .proto, no protobuf): messages are UTF-8 strings, so the test
 * reads plainly. Its four methods are the four kinds of call.
 */
const text = { serialize: (value: string) => Buffer.from(value), deserialize: (bytes: Buffer) => bytes.toString() }

const method = (name: string, requestStream: boolean, responseStream: boolean) => ({
  path: `/pillion.test.Echo/${name}`,
  requestStream,
  responseStream,
  requestSerialize: text.serialize,
  requestDeserialize: text.deserialize,
  responseSerialize: text.serialize,
  responseDeserialize: text.deserialize,
})

export const echoService = {
  say: method('Say', false, false),
  count: method('Count', false, true),
  collect: method('Collect', true, false),
  chat: method('Chat', true, true),
} satisfies grpc.ServiceDefinition

export const EchoClient = grpc.makeGenericClientConstructor(echoService, 'Echo')

/** What the upstream noticed: the deadline left on the last slow call, and how many there were. */
export const seen = { deadlineMs: Number.POSITIVE_INFINITY, slowCalls: 0, flaky: {} as Record<string, number>, unavailable: 0, cancelled: 0 }

/** What a failing call sends as grpc-status-details-bin: opaque bytes a proxy must carry intact. */
export const DETAILS = Buffer.from([0x08, 0x05, 0x12, 0x03, 0xff, 0x00, 0x7f])

/**
 * The upstream's behaviour: `say` echoes with the caller's x-tenant metadata, or fails with NOT_FOUND
 * and binary details when asked to; `count` streams n messages; `collect` joins what it got; `chat`
 * answers each message as it comes.
 */
export const echoImplementation: grpc.UntypedServiceImplementation = {
  say(call: grpc.ServerUnaryCall<string, string>, callback: grpc.sendUnaryData<string>) {
    const tenant = call.metadata.get('x-tenant')[0] ?? 'none'
    if (call.request === 'slow') {
      // Never answers: the deadline the gateway passed on (grpc-timeout) is noted, and the call waits to be cancelled.
      const deadline = call.getDeadline()
      seen.deadlineMs = deadline instanceof Date ? deadline.getTime() - Date.now() : Number(deadline) - Date.now()
      seen.slowCalls++
      return
    }
    if (call.request.startsWith('flaky:')) {
      // UNAVAILABLE, trailers-only (no metadata sent first), until the third call with this key.
      const calls = (seen.flaky[call.request] = (seen.flaky[call.request] ?? 0) + 1)
      if (calls < 3) return callback({ code: grpc.status.UNAVAILABLE, details: `try again (call ${calls})` })
      return callback(null, `${call.request} after ${calls} calls`)
    }
    if (call.request === 'unavailable') seen.unavailable++
    if (call.request === 'unavailable') return callback({ code: grpc.status.UNAVAILABLE, details: 'down for maintenance' })
    // Headers first: a failure below then comes in trailers after them, not trailers-only.
    call.sendMetadata(new grpc.Metadata())
    if (call.request === 'fail') {
      const metadata = new grpc.Metadata()
      metadata.set('grpc-status-details-bin', DETAILS)
      metadata.set('x-why', 'asked to')
      return callback({ code: grpc.status.NOT_FOUND, details: 'no such thing: fail', metadata })
    }
    const trailer = new grpc.Metadata()
    trailer.set('x-served-by', 'echo')
    callback(null, `${call.request} (tenant ${tenant})`, trailer)
  },
  count(call: grpc.ServerWritableStream<string, string>) {
    if (call.request === 'endless') {
      // Writes until the caller goes away, with backpressure; notes the cancellation that reaches it.
      let i = 0
      const pump = () => {
        while (!call.cancelled && call.write(`${++i}`));
        if (!call.cancelled) call.once('drain', pump)
      }
      call.on('cancelled', () => seen.cancelled++)
      return pump()
    }
    const n = Number(call.request)
    for (let i = 1; i <= n; i++) call.write(`${i}`)
    call.end()
  },
  collect(call: grpc.ServerReadableStream<string, string>, callback: grpc.sendUnaryData<string>) {
    const got: string[] = []
    call.on('data', (message: string) => got.push(message))
    call.on('end', () => callback(null, got.join('+')))
  },
  chat(call: grpc.ServerDuplexStream<string, string>) {
    call.on('data', (message: string) => call.write(`re: ${message}`))
    call.on('end', () => call.end())
  },
}


/** Starts the echo service on 127.0.0.1 with the given credentials; resolves with its port and a stop function. */
export async function startEchoServer(credentials: grpc.ServerCredentials = grpc.ServerCredentials.createInsecure()): Promise<{ port: number; stop(): Promise<void> }> {
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 64 * 1024 * 1024, 'grpc.max_send_message_length': 64 * 1024 * 1024 })
  server.addService(echoService, echoImplementation)
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', credentials, (error, bound) => (error ? reject(error) : resolve(bound))),
  )
  return { port, stop: () => new Promise((resolve) => server.tryShutdown(() => resolve())) }
}
