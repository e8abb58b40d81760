import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { ROOT } from './harness.ts'

/**
 * Unit files whose subject behaves by the runtime's own web classes (Headers' order, the URL parser,
 * TextDecoder, JSON.stringify): `npm test` runs them under Node; here they run again under Bun's and Deno's own test
 * runners, which take node:test and node:assert.
 */
const FILES = [
  'test/unit/proxy/forwarded-fields.property.test.ts',
  'test/unit/runtime/h1-client.test.ts',
  'test/unit/runtime/upstream-url.property.test.ts',
  // The spans' bytes against the runtime's own JSON.stringify and TextEncoder.
  'test/unit/observability/otlp-json.property.test.ts',
]
const BIN = join(ROOT, 'node_modules/.bin')
const RUNNERS = [
  { name: 'bun', command: [join(BIN, 'bun'), 'test', '--timeout=60000'] },
  { name: 'deno', command: [join(BIN, 'deno'), 'test', '-A', '--quiet'] },
]

function run(command: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(command[0]!, command.slice(1), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (chunk) => (output += chunk))
    child.stderr.on('data', (chunk) => (output += chunk))
    child.on('close', (code) => resolve({ code, output }))
  })
}

for (const runner of RUNNERS) {
  describe(`unit files under ${runner.name}`, () => {
    for (const file of FILES) {
      it(file, { timeout: 120_000 }, async () => {
        const { code, output } = await run([...runner.command, join(ROOT, file)])
        assert.equal(code, 0, output.slice(-4000))
      })
    }
  })
}
