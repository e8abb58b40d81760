import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { deferred, request, runPillion, startGateway, startUpstream, targets, tempDir } from './harness.ts'

const BROKEN = `
[gateway]
service = ""
shutdown_grace = "soon"

[listeners.ingress]
listen = "127.0.0.1:0"
direction = "sideways"

[upstreams.local]
endpoints = ["http://127.0.0.1:3000"]

[[routes]]
listener = "ingress"
path = "/*"
upstream = "nowhere"
retries = 3
`

function minimalPolicy(upstreamUrl: string, grace = '5s'): string {
  return `
[gateway]
service = "lifecycle"
admin = "127.0.0.1:0"
shutdown_grace = "${grace}"

[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"

[upstreams.local]
endpoints = ["${upstreamUrl}"]

[[routes]]
listener = "ingress"
path = "/*"
upstream = "local"
`
}

for (const target of targets()) {
  describe(`lifecycle on ${target.name}`, { skip: target.missing }, () => {
    it('prints its version and runtime', async () => {
      const { code, stdout } = await runPillion(target, ['version'])
      assert.equal(code, 0)
      assert.match(stdout, /^pillion \d+\.\d+\.\d+/)
      const help = await runPillion(target, ['--help'])
      assert.equal(help.code, 0)
      assert.match(help.stdout, /pillion run/)
    })

    it('check lists every problem with file and key path, and exits 1', async () => {
      const file = join(tempDir(), 'broken.toml')
      writeFileSync(file, BROKEN)
      const { code, stderr } = await runPillion(target, ['check', file])
      assert.equal(code, 1)
      for (const path of ['gateway.service', 'gateway.shutdown_grace', 'listeners.ingress.direction', 'routes[0].retries', 'routes[0].upstream']) {
        assert.ok(stderr.includes(`${file}: ${path}:`), `missing ${path} in:\n${stderr}`)
      }
    })

    it('check accepts a good file', async () => {
      const file = join(tempDir(), 'good.toml')
      writeFileSync(file, minimalPolicy('http://127.0.0.1:1'))
      const { code, stdout } = await runPillion(target, ['check', file])
      assert.equal(code, 0, stdout)
    })

    it('run refuses a bad file without listening, naming line and column for TOML syntax errors', async () => {
      const dir = tempDir()
      const file = join(dir, 'pillion.toml')
      writeFileSync(file, '[gateway]\nservice = "x"\nadmin = \n')
      const { code, stderr } = await runPillion(target, ['run', '-c', file])
      assert.equal(code, 1)
      assert.match(stderr, new RegExp(`${file.replace(/[.]/g, '\\.')}:3:\\d+: TOML syntax error`))
      const missing = await runPillion(target, ['run', '-c', join(dir, 'absent.toml')])
      assert.equal(missing.code, 1)
      assert.match(missing.stderr, /cannot read/)
    })

    it('on SIGTERM stops accepting, lets the in-flight request finish, then exits 0', async () => {
      const arrived = deferred()
      let release!: () => void
      const upstream = await startUpstream((req, res) => {
        if (req.url === '/slow') {
          release = () => res.end('finished')
          arrived.resolve()
        } else res.end('fast')
      })
      const gateway = await startGateway(target, minimalPolicy(upstream.url))
      try {
        const inFlight = request(`${gateway.listeners.ingress}/slow`)
        await arrived.promise
        gateway.process.kill('SIGTERM')
        await gateway.waitForLine(/shutting down/)
        release()
        const reply = await inFlight
        assert.equal(reply.status, 200)
        assert.equal(reply.body.toString(), 'finished')
        assert.equal(await gateway.exited, 0)
        await assert.rejects(request(`${gateway.listeners.ingress}/fast`), /ECONNREFUSED/)
      } finally {
        await gateway.stop('SIGKILL')
        await upstream.close()
      }
    })
  })
}

describe('dist/pillion.js is one bundle for every runtime', () => {
  const bundle = targets().find((t) => t.name === 'node')
  for (const runtime of ['bun', 'deno'] as const) {
    const via = targets().find((t) => t.name === runtime)
    const skip = bundle?.missing ?? (bundle && via ? undefined : `needs the node and ${runtime} targets`)
    it(`runs under ${runtime}`, { skip }, async () => {
      const command = runtime === 'bun' ? [via!.command[0]!] : [via!.command[0]!, 'run', '-A']
      const { code, stdout } = await runPillion({ name: runtime, command: [...command, bundle!.command[1]!] }, [
        'check',
        'policies/demo.toml',
      ])
      assert.equal(code, 0)
      assert.match(stdout, /policies\/demo\.toml: ok/)
    })
  }
})
