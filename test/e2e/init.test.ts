// `pillion init` writes a starter policy that `pillion check` accepts, and never overwrites a file.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { runPillion, targets, tempDir } from './harness.ts'

for (const target of targets()) {
  describe(`pillion init on ${target.name}`, { skip: target.missing, timeout: 60_000 }, () => {
    it('writes ./pillion.toml that passes pillion check, and refuses to overwrite it', async () => {
      const dir = tempDir()
      const made = await runPillion(target, ['init', '--service', 'orders', '--upstream', 'http://127.0.0.1:3000', '--listen', '0.0.0.0:8080'], dir)
      assert.equal(made.code, 0, made.stderr)
      assert.match(made.stdout, /wrote \.\/pillion\.toml/)
      const written = readFileSync(join(dir, 'pillion.toml'), 'utf8')
      assert.match(written, /^service = "orders"$/m)

      const checked = await runPillion(target, ['check', 'pillion.toml'], dir)
      assert.equal(checked.code, 0, checked.stderr)
      assert.match(checked.stdout, /pillion\.toml: ok/)

      const again = await runPillion(target, ['init', '--service', 'other'], dir)
      assert.equal(again.code, 1)
      assert.match(again.stderr, /already exists; not overwriting it/)
      assert.equal(readFileSync(join(dir, 'pillion.toml'), 'utf8'), written)
    })

    it('-c FILE writes elsewhere; bad options write nothing', async () => {
      const dir = tempDir()
      const made = await runPillion(target, ['init', '-c', 'edge.toml', '--listen', '127.0.0.1:9080'], dir)
      assert.equal(made.code, 0, made.stderr)
      assert.equal((await runPillion(target, ['check', 'edge.toml'], dir)).code, 0)
      const bad = await runPillion(target, ['init', '-c', 'bad.toml', '--listen', '8080'], dir)
      assert.equal(bad.code, 2)
      assert.match(bad.stderr, /listeners\.ingress\.listen: expected "host:port"/)
      assert.throws(() => readFileSync(join(dir, 'bad.toml')), /ENOENT/)
    })
  })
}
