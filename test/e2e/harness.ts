import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, writeFileSync, existsSync, readFileSync } from 'node:fs'
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { createInterface } from 'node:readline'

export const ROOT = resolve(import.meta.dirname, '../..')
const BIN = join(ROOT, 'node_modules/.bin')

export interface Target {
  name: string
  command: string[]
  /** Why it cannot run here, if it cannot. */
  missing?: string
}

/** The same suite runs against each of these: the product as each runtime and the binary run it. */
export function targets(): Target[] {
  const all: Target[] = [
    { name: 'node', command: ['node', join(ROOT, 'dist/pillion.js')] },
    { name: 'bun', command: [join(BIN, 'bun'), join(ROOT, 'src/main.ts')] },
    { name: 'deno', command: [join(BIN, 'deno'), 'run', '-A', '--quiet', '--unstable-no-legacy-abort', join(ROOT, 'src/main.ts')] },
    { name: 'binary', command: [join(ROOT, 'dist/pillion-linux-x64')] },
  ]
  const only = process.env.PILLION_TARGETS?.split(',')
  return all
    .filter((t) => !only || only.includes(t.name))
    .map((t) => {
      const file = t.command.find((part) => part.startsWith(join(ROOT, 'dist')))
      return file && !existsSync(file) ? { ...t, missing: `${file} not built (npm run build)` } : t
    })
}

export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'pillion-test-'))
}

export interface Gateway {
  process: ChildProcess
  /** The policy file it runs on. */
  policyFile: string
  listeners: Record<string, string> // name -> base URL
  admin: string
  /** The probes listener's base URL ([gateway] probes); '' when it has none. */
  probes: string
  stdout: string[]
  stderr: string[]
  /** Resolves with the first line of stdout/stderr that matches. */
  waitForLine(pattern: RegExp, stream?: 'stdout' | 'stderr'): Promise<string>
  exited: Promise<number | null>
  stop(signal?: NodeJS.Signals): Promise<number | null>
  peakRssKb(): number
  rssKb(): number
}

/**
 * Starts `pillion run` on the given policy text and waits for it to print that it is ready. With
 * `laidOut`, it runs on that file instead, which the caller has laid out (`policy` is not written).
 */
export async function startGateway(target: Target, policy: string, env: Record<string, string> = {}, laidOut?: string): Promise<Gateway> {
  const dir = laidOut === undefined ? tempDir() : dirname(laidOut)
  const file = laidOut ?? join(dir, 'pillion.toml')
  if (laidOut === undefined) writeFileSync(file, policy)
  const [command, ...args] = target.command
  const child = spawn(command!, [...args, 'run', '-c', file], {
    cwd: dir,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const stdout: string[] = []
  const stderr: string[] = []
  const waiters: Array<{ pattern: RegExp; stream: 'stdout' | 'stderr'; resolve: (line: string) => void }> = []
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const onLine = (stream: 'stdout' | 'stderr') => (line: string) => {
    ;(stream === 'stdout' ? stdout : stderr).push(line)
    for (const waiter of [...waiters]) {
      if (waiter.stream === stream && waiter.pattern.test(line)) {
        waiters.splice(waiters.indexOf(waiter), 1)
        waiter.resolve(line)
      }
    }
  }
  createInterface({ input: child.stdout! }).on('line', onLine('stdout'))
  createInterface({ input: child.stderr! }).on('line', onLine('stderr'))
  const waitForLine = (pattern: RegExp, stream: 'stdout' | 'stderr' = 'stdout') => {
    const seen = (stream === 'stdout' ? stdout : stderr).find((line) => pattern.test(line))
    if (seen !== undefined) return Promise.resolve(seen)
    return new Promise<string>((resolve, reject) => {
      waiters.push({ pattern, stream, resolve })
      void exited.then((code) =>
        reject(new Error(`gateway exited (${code}) before printing ${pattern}\nstdout:\n${stdout.join('\n')}\nstderr:\n${stderr.join('\n')}`)),
      )
    })
  }
  await waitForLine(/ ready in /)
  const listeners: Record<string, string> = {}
  let admin = ''
  let probes = ''
  for (const line of stdout) {
    const listener = /listener (\S+) \(\w+\) on (http\S+)/.exec(line)
    if (listener) listeners[listener[1]!] = listener[2]!
    const adminLine = /admin on (http\S+)/.exec(line)
    if (adminLine) admin = adminLine[1]!
    const probesLine = /probes on (http\S+)/.exec(line)
    if (probesLine) probes = probesLine[1]!
  }
  return {
    process: child,
    policyFile: file,
    listeners,
    admin,
    probes,
    stdout,
    stderr,
    waitForLine,
    exited,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      return exited
    },
    peakRssKb() {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8')
      return Number(/VmHWM:\s+(\d+)/.exec(status)![1])
    },
    rssKb() {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8')
      return Number(/VmRSS:\s+(\d+)/.exec(status)![1])
    },
  }
}

/** Runs a pillion command to completion (check, version, ...). */
export function runPillion(target: Target, args: string[], cwd = ROOT): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const [command, ...rest] = target.command
  const child = spawn(command!, [...rest, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (d) => (stdout += d))
  child.stderr!.on('data', (d) => (stderr += d))
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })))
}

export type Handler = (req: IncomingMessage, res: ServerResponse) => void

export interface Upstream {
  server: Server
  url: string
  port: number
  /** Every socket that ever connected, to prove connection reuse. */
  connections: number
  close(): Promise<void>
}

export async function startUpstream(handler: Handler): Promise<Upstream> {
  const server = createServer(handler)
  const upstream = { server, url: '', port: 0, connections: 0 } as Upstream
  server.on('connection', () => upstream.connections++)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  upstream.port = (server.address() as AddressInfo).port
  upstream.url = `http://127.0.0.1:${upstream.port}`
  upstream.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  return upstream
}

/** Below the kernel's ephemeral ports (32768 and up on Linux), with room for Redis Cluster's bus port (port + 10000). */
const CLOSED_PORTS = { from: 10_000, to: 22_767 }

/**
 * A port with nothing listening on it, for connection-refused cases (and for servers a test starts
 * there later). Not an ephemeral port freed a moment ago: another test's listener on port 0 could be
 * given it, or the connection that tries it could get it as its own local port and reach itself.
 */
export async function closedPort(): Promise<number> {
  for (let tries = 0; tries < 50; tries++) {
    const port = CLOSED_PORTS.from + Math.floor(Math.random() * (CLOSED_PORTS.to - CLOSED_PORTS.from + 1))
    if (await refused(port)) return port
  }
  throw new Error(`no closed port found in ${CLOSED_PORTS.from}-${CLOSED_PORTS.to}`)
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port })
    socket.once('connect', () => {
      socket.destroy()
      resolve(false)
    })
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'))
  })
}

export function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

/** An upstream answer to an upload: its size and SHA-256, read as it streams (never held whole). */
export function answerWithDigest(req: IncomingMessage, res: ServerResponse): void {
  const hash = createHash('sha256')
  let bytes = 0
  req.on('data', (c: Buffer) => {
    bytes += c.length
    hash.update(c)
  })
  req.on('end', () => res.end(JSON.stringify({ bytes, sha256: hash.digest('hex') })))
}

/** A deferred value: a test awaits an event instead of sleeping. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((r) => (resolve = r))
  return { promise, resolve }
}

export interface Reply {
  status: number
  headers: IncomingMessage['headers']
  rawHeaders: string[]
  body: Buffer
  json<T = any>(): T
}

/** A plain node:http client, so tests control every header and see every header that comes back. */
export function request(
  url: string,
  options: { method?: string; headers?: Record<string, string | string[]>; body?: string | Buffer } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('error', reject)
      res.on('end', () => {
        const body = Buffer.concat(chunks)
        resolve({
          status: res.statusCode!,
          headers: res.headers,
          rawHeaders: res.rawHeaders,
          body,
          json: () => JSON.parse(body.toString()),
        })
      })
    })
    req.on('error', reject)
    req.end(options.body)
  })
}

export function rawHeaderValues(rawHeaders: string[], name: string): string[] {
  const values: string[] = []
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]!.toLowerCase() === name) values.push(rawHeaders[i + 1]!)
  return values
}

/**
 * Asks until the answer is there. Each probe is a real request, so the wait is driven by events;
 * the bound only keeps a broken gateway from hanging the suite.
 */
export async function until<T>(what: string, probe: () => Promise<T | undefined>, boundMs = 10_000): Promise<T> {
  const deadline = Date.now() + boundMs
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10)) // pacing between polls, not synchronisation
  }
}
