import { loadRuntime } from './runtime/index.ts'
import { runCli } from './cli.ts'

const runtime = await loadRuntime()
runtime.exit(await runCli(runtime))
