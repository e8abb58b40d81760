// The compiled binary's entry (scripts/build.mjs): main.ts with the Bun adapter chosen at build time.
// Through loadRuntime the one bundle would carry the Node and Deno adapters too, and Bun's bundler
// hoists their imports (node:http, undici, node:cluster …) to its top, loaded at every start.
import { createBunRuntime } from './runtime/bun.ts'
import { runCli } from './cli.ts'

const runtime = createBunRuntime()
runtime.exit(await runCli(runtime))
