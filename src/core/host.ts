import type { Abortable } from './cancel.ts'

/** The one seam between Pillion's web-standard core and the runtime that hosts it. */

export interface ClientInfo {
  remoteAddress: string
  /**
   * Tells the listener once if the client goes away before its answer is complete; the returned
   * function stops watching. A runtime leaves it out when the request's signal is as cheap: Node
   * has it because @hono/node-server builds an AbortController for a request's signal on first use.
   */
  watchGone?(listener: { handleEvent(): void }): () => void
}

/**
 * An upstream's TLS: PEM files (resolved against the policy file) read on first use, and the name
 * sent as SNI and checked against the endpoint's certificate instead of the URL's host.
 */
export interface UpstreamTls {
  /** The CA that signs the endpoints' certificates, instead of the system's. */
  ca?: string
  /** The client certificate presented (mTLS); always set together with key. */
  cert?: string
  key?: string
  serverName?: string
}

/** Header fields as an HTTP/1.1 client writes them: what a Headers' get and forEach give, maybe without one. */
export type HeaderFields = Pick<Headers, 'get' | 'forEach'>

/** What the core passes to the upstream client: a ready-to-send request, already sanitised. */
export interface UpstreamRequest {
  url: string
  method: string
  headers: Headers
  /**
   * The same fields as `headers`, for a client that only writes them out: read this way, the
   * Headers need not be built (`headers` then builds them on first use).
   */
  fields?: HeaderFields
  /** A stream is sent once; bytes (a retry's buffered copy) can be sent again. */
  body: ReadableStream<Uint8Array> | Uint8Array | null
  /** An AbortSignal, or the exchange's own lighter cancellation. */
  signal: Abortable
  connectTimeoutMs: number
  /** How to meet an https endpoint: whom to trust, which certificate to present, which name to verify. */
  tls?: UpstreamTls
  /** Absent: HTTP/1.1. h2c and h2 go over one pooled HTTP/2 connection per origin. */
  protocol?: 'h2c' | 'h2'
  /** An answer body with a declared length up to this many bytes is read whole before the answer resolves. */
  bufferUpTo?: number
}

/**
 * The upstream's answer as plain parts rather than a Response, so a runtime can hand over bytes it
 * read natively without wrapping them in a web stream first (Node: no undici Response per request).
 */
export interface UpstreamAnswer {
  status: number
  statusText: string
  /** Possibly the runtime's immutable headers (fetch's): a caller that changes them copies first. */
  headers: Headers
  /** Bytes when read whole (see bufferUpTo), else a stream to read or cancel; null for HEAD, 204 and 304. */
  body: ReadableStream<Uint8Array> | Uint8Array<ArrayBuffer> | null
  /** HTTP/2 answers: the trailer fields, settled once the body has ended (empty when there were none, or the body failed). */
  trailers?: Promise<Headers>
  /**
   * True when `headers` already hold none of the hop-by-hop fields (RFC 9110 §7.6.1) nor those the
   * answer's Connection named: the client dropped them as it parsed, so the forwarder need not.
   */
  endToEnd?: boolean
}

/** Sends one request upstream. Never follows redirects and never decodes content-encoding. */
export type UpstreamClient = (request: UpstreamRequest) => Promise<UpstreamAnswer>

export type Handler = (request: Request, client: ClientInfo) => Response | Promise<Response>

/** What a listener speaks: HTTP/1.1, HTTP/2 in cleartext with prior knowledge (gRPC's h2c), HTTP/2 over TLS by ALPN. */
export type ListenerProtocol = 'http1' | 'h2c' | 'h2'

/** How an upstream is spoken to: HTTP/1.1 (http:// or https://), HTTP/2 in cleartext, HTTP/2 over TLS. */
export type UpstreamProtocol = 'http1' | 'h2c' | 'h2'

export interface ServeOptions {
  host: string
  port: number
  /** Longest a request may take end to end, so the runtime's idle cut-off never fires first. */
  requestTimeoutMs: number
  /** Longest a request's header section may take to arrive (slow clients), from the accept or a later request's first byte; 0: none. */
  headersTimeoutMs?: number
  /**
   * Whether the deadline must hold even on a runtime whose server has none of its own and must relay
   * every connection through a front to keep one (Bun, Deno): set for a listener other hosts can
   * reach, or one whose deadline the policy sets (listener-setup.ts).
   */
  headersTimeoutRequired?: boolean
  /**
   * Terminate TLS with these PEM texts; with clientCa, require client certificates signed by it (mTLS),
   * and with acceptsPeer also a certificate whose subject alternative names it accepts.
   */
  tls?: { cert: string; key: string; clientCa?: string; acceptsPeer?: PeerNamesCheck }
  /** Absent: HTTP/1.1 alone, on the runtime's own server. With h2c or h2 the runtime serves HTTP/2 (and HTTP/1.1 beside it if listed). */
  protocols?: readonly ListenerProtocol[]
  /** Bind with SO_REUSEPORT, so the workers of `pillion run --workers N` share the address (Bun, Deno; Node shares through cluster). */
  reusePort?: boolean
}

/** Whether a verified client certificate's subject alternative names (`DNS:…`, `URI:…`) may connect; the address is for telling. */
export type PeerNamesCheck = (subjectAltNames: readonly string[], remoteAddress: string) => boolean

export interface Server {
  host: string
  port: number
  /**
   * New certificate, key or client CA texts for a TLS listener (rotation): new handshakes get them,
   * open connections and requests in flight go on. Same files, same settings: only the texts change.
   */
  updateTls(tls: NonNullable<ServeOptions['tls']>): Promise<void>
  /** Stops accepting, waits for in-flight requests and open WebSockets to end by themselves, then closes. */
  close(): Promise<void>
  /** Sends close 1001 to both sides of every open WebSocket (the shutdown grace is over); they end soon after. */
  closeWebSockets(): void
}

export type SignalName = 'SIGTERM' | 'SIGINT' | 'SIGHUP'

/** PEM files read the way the runtime's TLS stack will; each answer is a problem in words, or undefined. */
export interface PemInspector {
  /** At least one certificate, and all of them parse. */
  certificates(pem: string): string | undefined
  /** The certificate parses, the key parses, and the key is the certificate's; which file is at fault. */
  keyPair(certPem: string, keyPem: string): { file: 'cert' | 'key'; problem: string } | undefined
}

/**
 * Keys this runtime cannot honour, each with why and what works instead; a key left out works.
 * `pillion check` and `pillion run` refuse a policy that sets one (src/gateway/runtime-support.ts).
 */
export interface RuntimeGaps {
  /** A listener's tls.client_ca: verifying client certificates. */
  clientCa?: string
  /** A listener's tls.allowed_sans: reading the verified client certificate's names. */
  allowedSans?: string
  /** An upstream's server_name: a TLS server name other than the endpoint URL's host. */
  upstreamServerName?: string
}

export interface Runtime {
  name: 'node' | 'bun' | 'deno'
  version: string
  pem: PemInspector
  gaps: RuntimeGaps
  serve(handler: Handler, options: ServeOptions): Promise<Server>
  upstream: UpstreamClient
  /** The files behind upstream TLS settings changed: new connections read them again, open ones go on. */
  upstreamTlsFilesChanged(): void
  readTextFile(path: string): Promise<string>
  /** For the policy loader alone, which is synchronous: `${file:…}` references (mounted secrets, small files). */
  readTextFileSync(path: string): string
  /**
   * Writes the whole file at once (a temporary file renamed over it), so a reader never sees half.
   * With `createOnly` it creates the file instead, and rejects if it exists (`pillion init`).
   */
  writeTextFile(path: string, text: string, options?: { createOnly?: boolean }): Promise<void>
  /** Calls back when the file changes, also across atomic replace (rename over it). Returns a stop function. */
  watchFile(path: string, onChange: () => void): () => void
  /** Every A and AAAA address of a host name, IPv6 without brackets; rejects when it has none. */
  resolveDns(host: string): Promise<string[]>
  onSignal(signal: SignalName, listener: () => void): void
  /** This process's memory now, for GET /metrics (a leak shows there before the OOM killer). */
  memory(): MemoryUsage
  env(name: string): string | undefined
  args: string[]
  /**
   * Opens "stdout" or a file (created if missing, appended to) for log lines that are written in
   * batches off the request path; a write never blocks the event loop on a slow reader or disk.
   */
  openAppendSink(to: string): Promise<AppendSink>
  writeOut(line: string): void
  writeErr(line: string): void
  exit(code: number): never
  /** Starts and watches copies of this program for `pillion run --workers N` (src/gateway/workers.ts). */
  workers: WorkerHost
  /**
   * Starts another program (`pillion run -- CMD ARGS…`) with this process's stdin, stdout and stderr
   * and its environment plus `env`. Its `exited` rejects if the program cannot be started.
   */
  spawn(command: string, args: string[], options?: { env?: Record<string, string> }): ChildApp
}

/** What the runtime reports of this process's memory, in bytes. */
export interface MemoryUsage {
  /** Resident set size: what the kernel (and a container's memory limit) counts. */
  residentBytes: number
  /** The JavaScript engine's heap in use and reserved (V8 on Node and Deno, JavaScriptCore on Bun and the binary). */
  heapUsedBytes: number
  heapTotalBytes: number
}

/** A program Pillion started and waits for. */
export interface ChildApp {
  pid: number
  /** Resolves once it has exited: the exit code, or 128 + n after signal n. Rejects if it never started (not found, no permission). */
  exited: Promise<number>
  /** Sends it a signal; nothing happens if it has exited. */
  kill(signal: SignalName | 'SIGKILL'): void
}

/** How this runtime runs N copies of Pillion on one host, each serving the same listeners. */
export interface WorkerHost {
  /** How workers share a listening address: each binds it with SO_REUSEPORT, or Node's cluster primary holds it. */
  sharing: 'reuse-port' | 'cluster'
  /** Why workers cannot run here (platform, permissions), if they cannot. */
  unavailable(): string | undefined
  /** Starts this program again, the way this process was started, with these arguments after the script and extra environment. */
  start(args: string[], env: Record<string, string>): WorkerProcess
  /** In a worker: calls back once when the supervisor is gone without having stopped it (the pipe it holds closes). */
  onSupervisorGone(listener: () => void): void
}

/** A worker process as its supervisor sees it. Its stderr is the supervisor's; its stdout comes through here. */
export interface WorkerProcess {
  pid: number
  /** Its stdout as text, in chunks that may end mid-line. */
  onOutput(listener: (text: string) => void): void
  /** Resolves once it has exited and its stdout is read to the end: the exit code, or 128 + n after signal n. */
  exited: Promise<number>
  kill(signal: SignalName | 'SIGKILL'): void
}

/** Where access log batches go: writes are asynchronous and complete in order. */
export interface AppendSink {
  write(bytes: Uint8Array): Promise<void>
  close(): Promise<void>
}

/** What upstream discovery needs from the host: names to resolve and files to read and watch. */
export type DiscoveryHost = Pick<Runtime, 'resolveDns' | 'readTextFile' | 'watchFile'>
