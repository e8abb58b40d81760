/**
 * W3C Trace Context (traceparent) and B3 single-header parsing and formatting, by hand: a few
 * lines, no SDK, the same on every runtime (runtime.md §6.1).
 */

export interface TraceContext {
  /** 32 lower-case hex digits, not all zero. */
  traceId: string
  /** 16 lower-case hex digits, not all zero: the caller's span, our span's parent. */
  spanId: string
  sampled: boolean
}

const HEX32 = /^[0-9a-f]{32}$/
const HEX16 = /^[0-9a-f]{16}$/
const ZERO32 = '0'.repeat(32)
const ZERO16 = '0'.repeat(16)

/**
 * `00-<trace-id>-<parent-id>-<flags>`. A later version may append fields after another dash
 * (§3.2.4: parse what we know); version ff and malformed values are ignored, starting a new trace.
 */
export function parseTraceparent(value: string | null): TraceContext | undefined {
  if (value === null || value.length < 55) return undefined
  const text = value.trim()
  const version = text.slice(0, 2)
  if (!/^[0-9a-f]{2}$/.test(version) || version === 'ff') return undefined
  if (version === '00' ? text.length !== 55 : text.length > 55 && text[55] !== '-') return undefined
  if (text[2] !== '-' || text[35] !== '-' || text[52] !== '-') return undefined
  const traceId = text.slice(3, 35)
  const spanId = text.slice(36, 52)
  const flags = text.slice(53, 55)
  if (!HEX32.test(traceId) || traceId === ZERO32 || !HEX16.test(spanId) || spanId === ZERO16 || !/^[0-9a-f]{2}$/.test(flags)) return undefined
  return { traceId, spanId, sampled: (parseInt(flags, 16) & 1) === 1 }
}

export function formatTraceparent(traceId: string, spanId: string, sampled: boolean): string {
  return `00-${traceId}-${spanId}-${sampled ? '01' : '00'}`
}

/** What a B3 header said: a full context, or only a sampling decision ("b3: 0"). */
export type B3 = { context: TraceContext } | { sampled: boolean }

/**
 * `b3: {TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]` or a lone sampling state.
 * A 64-bit trace id is left-padded to 128 bits, as Zipkin does when talking to W3C systems.
 * A missing sampling state is treated as unsampled; `d` (debug) means sampled.
 */
export function parseB3(value: string | null): B3 | undefined {
  if (value === null) return undefined
  const parts = value.trim().toLowerCase().split('-')
  if (parts.length === 1) {
    const state = parts[0]
    return state === '0' ? { sampled: false } : state === '1' || state === 'd' ? { sampled: true } : undefined
  }
  if (parts.length > 4) return undefined
  let [traceId, spanId, state] = parts as [string, string, string | undefined]
  if (traceId.length === 16) traceId = ZERO16 + traceId
  if (!HEX32.test(traceId) || traceId === ZERO32 || !HEX16.test(spanId) || spanId === ZERO16) return undefined
  if (state !== undefined && state !== '0' && state !== '1' && state !== 'd') return undefined
  return { context: { traceId, spanId, sampled: state === '1' || state === 'd' } }
}

export function formatB3(traceId: string, spanId: string, sampled: boolean): string {
  return `${traceId}-${spanId}-${sampled ? '1' : '0'}`
}

/**
 * The caller's context: traceparent first; B3 only when there is no valid traceparent (Linkerd's
 * rule). A lone B3 sampling decision comes back as a context-less decision.
 */
export function incomingContext(headers: Headers): { context?: TraceContext; sampled?: boolean; b3: boolean } {
  const w3c = parseTraceparent(headers.get('traceparent'))
  const b3Header = headers.get('b3')
  if (w3c !== undefined) return { context: w3c, b3: b3Header !== null }
  const b3 = parseB3(b3Header)
  if (b3 === undefined) return { b3: false }
  return 'context' in b3 ? { context: b3.context, b3: true } : { sampled: b3.sampled, b3: true }
}

const HEX = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, '0'))

/**
 * Random bytes drawn from crypto 4 KiB at a time and handed out in order, each byte once: one
 * getRandomValues call per ~170 traced requests instead of two per request (each costs a few µs on Node).
 */
const pool = new Uint8Array(4096)
let poolUsed = pool.length

/** Random hex of `bytes` bytes, never all zero (an all-zero id is invalid). */
export function randomId(bytes: 8 | 16): string {
  if (poolUsed + bytes > pool.length) {
    crypto.getRandomValues(pool)
    poolUsed = 0
  }
  let id = ''
  let zero = true
  for (let i = poolUsed; i < poolUsed + bytes; i++) {
    const byte = pool[i]!
    id += HEX[byte]
    if (byte !== 0) zero = false
  }
  poolUsed += bytes
  return zero ? randomId(bytes) : id
}
