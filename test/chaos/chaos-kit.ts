// What the chaos tests share: a load driver on node:http that tells a complete answer from a cut
// one, and the figures each scenario adds to reports/chaos.json.
import { appendFileSync } from 'node:fs'
import { Agent, request as httpRequest } from 'node:http'

export interface Outcome {
  /** 0 when no response head arrived (refused, reset, or the client gave up). */
  status: number
  /** The whole body arrived, as its framing (Content-Length, last chunk) declared it. */
  complete: boolean
  bytes: number
  ms: number
  error?: string
}

export interface CallOptions {
  method?: string
  headers?: Record<string, string>
  body?: string
  agent?: Agent
}

/** One request; never rejects: whatever happened is in the outcome. */
export function call(url: string, options: CallOptions = {}): Promise<Outcome> {
  const started = performance.now()
  return new Promise((resolve) => {
    let settled = false
    const done = (outcome: Omit<Outcome, 'ms'>) => {
      if (settled) return
      settled = true
      resolve({ ...outcome, ms: performance.now() - started })
    }
    const req = httpRequest(url, { method: options.method ?? 'GET', headers: options.headers, agent: options.agent ?? false }, (res) => {
      let bytes = 0
      res.on('data', (chunk: Buffer) => (bytes += chunk.length))
      res.on('error', () => {})
      // 'close' comes after 'end' for a whole body, and alone for a cut one: res.complete tells them apart.
      res.on('close', () => done({ status: res.statusCode ?? 0, complete: res.complete, bytes }))
    })
    req.on('error', (error) => done({ status: 0, complete: false, bytes: 0, error: (error as NodeJS.ErrnoException).code ?? error.message }))
    req.end(options.body)
  })
}

/** `count` calls, `concurrency` at a time; outcomes in the order they were started. */
export async function drive(count: number, concurrency: number, next: (index: number) => Promise<Outcome>): Promise<Outcome[]> {
  const outcomes: Outcome[] = new Array(count)
  let started = 0
  const worker = async () => {
    while (started < count) {
      const index = started++
      outcomes[index] = await next(index)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
  return outcomes
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

/** Counts of each status (0 = no answer), for reports and assertion messages. */
export function tally(outcomes: Outcome[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const { status, complete } of outcomes) {
    const key = status === 0 ? 'no answer' : complete ? String(status) : `${status} cut`
    counts[key] = (counts[key] ?? 0) + 1
  }
  return counts
}

/** Adds one scenario's figures to the run's report (scripts/test-chaos.mjs gathers them). */
export function recordFigures(target: string, scenario: string, figures: Record<string, unknown>): void {
  const file = process.env.PILLION_CHAOS_FIGURES
  const line = JSON.stringify({ target, scenario, ...figures })
  console.log(`chaos figures: ${line}`)
  if (file !== undefined) appendFileSync(file, `${line}\n`)
}

export function round(ms: number): number {
  return Math.round(ms * 10) / 10
}

/**
 * A gateway with one ingress listener "in" and one upstream "app"; `gateway` adds [gateway] keys,
 * `route` keys to its one catch-all route, `rest` whole tables after it.
 */
export function chaosPolicy(service: string, upstreamUrl: string, extra: { gateway?: string; route?: string; rest?: string } = {}): string {
  return `
[gateway]
service = "${service}"
admin = "127.0.0.1:0"
${extra.gateway ?? ''}
[listeners.in]
listen = "127.0.0.1:0"
direction = "ingress"
[upstreams.app]
endpoints = ["${upstreamUrl}"]
${extra.rest ?? ''}
[[routes]]
name = "app"
listener = "in"
path = "/*"
upstream = "app"
${extra.route ?? ''}
`
}
