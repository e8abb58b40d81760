// `pillion run -- CMD`: the app starts once the gateway is ready, never when it cannot start, gets the
// signals, and Pillion exits with its code after draining.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { after, before, describe, it } from 'node:test'
import { closedPort, deferred, runPillion, startUpstream, targets, tempDir, type Upstream } from './harness.ts'

function policy(port: number, upstream: string): string {
  return `
[gateway]
service = "run-app"
admin = "127.0.0.1:0"
shutdown_grace = "5s"

[listeners.ingress]
listen = "127.0.0.1:${port}"
direction = "ingress"

[upstreams.app]
endpoints = ["${upstream}"]

[[routes]]
listener = "ingress"
path = "/*"
upstream = "app"
`
}

/** The app: asks the URL through the gateway at once (or, with "on-sigterm", once SIGTERM came) and exits with the code given. */
const APP = `
import { request } from 'node:http'
import { writeFileSync } from 'node:fs'
const [mode, url, code, marker] = process.argv.slice(2)
if (marker) writeFileSync(marker, 'ran')
const ask = () => new Promise((resolve) => request(url, { agent: false }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)) }).on('error', (e) => resolve(e.code)).end())
if (mode === 'now') {
  console.log('app: ' + (await ask()))
  process.exit(Number(code))
} else {
  process.on('SIGTERM', async () => {
    console.log('app: got SIGTERM, still through the gateway: ' + (await ask()))
    process.exit(Number(code))
  })
  setInterval(() => {}, 1 << 30) // a signal listener alone does not keep Node running
  console.log('app: waiting')
}
`

for (const target of targets()) {
  describe(`pillion run -- CMD on ${target.name}`, { skip: target.missing, timeout: 60_000 }, () => {
    let upstream: Upstream
    let dir: string
    let app: string
    before(async () => {
      upstream = await startUpstream((_req, res) => res.end('hello'))
      dir = tempDir()
      app = join(dir, 'app.mjs')
      writeFileSync(app, APP)
    })
    after(() => upstream.close())

    it('starts the app once the listeners are ready and exits with its exit code', async () => {
      const port = await closedPort()
      writeFileSync(join(dir, 'ready.toml'), policy(port, upstream.url))
      const run = await runPillion(target, ['run', '-c', 'ready.toml', '--', process.execPath, app, 'now', `http://127.0.0.1:${port}/hello`, '3'], dir)
      assert.equal(run.code, 3, run.stderr)
      assert.match(run.stdout, /^app: 200$/m)
      assert.ok(run.stdout.indexOf(' ready in ') < run.stdout.indexOf('app: 200'), run.stdout)
      assert.match(run.stdout, /exited with 3, draining/)
      assert.match(run.stdout, /pillion: stopped/)
    })

    it('never starts the app when the gateway cannot start: a bad policy, a port in use', async () => {
      const marker = join(dir, 'ran-bad-policy')
      writeFileSync(join(dir, 'bad.toml'), policy(0, 'not a url'))
      const bad = await runPillion(target, ['run', '-c', 'bad.toml', '--', process.execPath, app, 'now', 'http://127.0.0.1:1/', '0', marker], dir)
      assert.equal(bad.code, 1, bad.stderr)
      assert.equal(existsSync(marker), false)

      const taken = createServer()
      await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
      try {
        const port = (taken.address() as AddressInfo).port
        const busyMarker = join(dir, 'ran-port-in-use')
        writeFileSync(join(dir, 'busy.toml'), policy(port, upstream.url))
        const busy = await runPillion(target, ['run', '-c', 'busy.toml', '--', process.execPath, app, 'now', 'http://127.0.0.1:1/', '0', busyMarker], dir)
        assert.equal(busy.code, 1, busy.stderr)
        assert.match(busy.stderr, /cannot start/)
        assert.equal(existsSync(busyMarker), false)
      } finally {
        await new Promise<void>((resolve) => taken.close(() => resolve()))
      }
    })

    it('passes SIGTERM to the app, keeps serving until it exits, and exits with its code', async () => {
      const port = await closedPort()
      writeFileSync(join(dir, 'term.toml'), policy(port, upstream.url))
      const [command, ...args] = target.command
      const child = spawn(command!, [...args, 'run', '-c', 'term.toml', '--', process.execPath, app, 'on-sigterm', `http://127.0.0.1:${port}/hello`, '0'], {
        cwd: dir,
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      const lines: string[] = []
      let stderr = ''
      child.stderr!.on('data', (d) => (stderr += d))
      const waiting = deferred()
      createInterface({ input: child.stdout! }).on('line', (line) => {
        lines.push(line)
        if (line === 'app: waiting') waiting.resolve()
      })
      const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)))
      await Promise.race([waiting.promise, exited.then((code) => assert.fail(`pillion exited (${code}) before the app was up\n${lines.join('\n')}\n${stderr}`))])
      child.kill('SIGTERM')
      assert.equal(await exited, 0, `${lines.join('\n')}\n${stderr}`)
      assert.ok(lines.includes('app: got SIGTERM, still through the gateway: 200'), lines.join('\n'))
      assert.ok(lines.some((line) => line.includes('exited with 0, draining')), lines.join('\n'))
    })
  })
}
