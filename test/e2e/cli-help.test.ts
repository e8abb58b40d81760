import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { closedPort, runPillion, targets } from './harness.ts'

for (const target of targets()) {
  describe(`pillion --help and health messages on ${target.name}`, { skip: target.missing }, () => {
    it('every command answers --help and -h with its usage, exit 0', async () => {
      for (const command of ['run', 'check', 'health', 'init', 'version']) {
        for (const flag of ['--help', '-h']) {
          const { code, stdout, stderr } = await runPillion(target, [command, flag])
          assert.equal(code, 0, `${command} ${flag}: ${stderr}`)
          assert.match(stdout, new RegExp(`^Usage: pillion ${command}\\b[\\s\\S]*\\nOptions:\\n`), `${command} ${flag}`)
        }
      }
    })

    it('an unknown command prints the command list and exits 2', async () => {
      const { code, stderr } = await runPillion(target, ['frob'])
      assert.equal(code, 2)
      assert.match(stderr, /^pillion: unknown command "frob"\n[\s\S]*pillion run\b[\s\S]*pillion health\b/)
    })

    it('pillion health says connection refused when nothing listens', async () => {
      const port = await closedPort()
      const { code, stderr } = await runPillion(target, ['health', `http://127.0.0.1:${port}/healthz`])
      assert.equal(code, 1)
      assert.match(stderr, new RegExp(`^pillion health: cannot reach http://127\\.0\\.0\\.1:${port}/healthz: connection refused`))
    })
  })
}
