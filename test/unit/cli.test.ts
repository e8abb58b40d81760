import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { asksForHelp, COMMAND_HELP } from '../../src/cli-help.ts'
import { drain, runCli, unreachable } from '../../src/cli.ts'
import type { Runtime } from '../../src/core/host.ts'

/** runCli on the given arguments, with what it printed; only what help and health touch is real. */
async function cli(...args: string[]) {
  const out: string[] = []
  const err: string[] = []
  const runtime = {
    name: 'node',
    version: process.versions.node,
    args,
    env: () => undefined,
    writeOut: (text: string) => void out.push(text),
    writeErr: (text: string) => void err.push(text),
  } as unknown as Runtime
  const code = await runCli(runtime)
  return { code, out: out.join('\n'), err: err.join('\n') }
}

const COMMANDS = ['run', 'check', 'health', 'init', 'version']

describe('pillion <command> --help', () => {
  for (const command of COMMANDS) {
    for (const flag of ['--help', '-h']) {
      it(`pillion ${command} ${flag} prints its usage and options and exits 0`, async () => {
        const { code, out, err } = await cli(command, flag)
        assert.equal(code, 0)
        assert.equal(err, '')
        assert.match(out, new RegExp(`^Usage: pillion ${command}\\b`))
        assert.match(out, /\nOptions:\n/)
        assert.match(out, /-h, --help/)
      })
    }
  }

  it('lists every option a command reads', async () => {
    assert.match((await cli('run', '--help')).out, /-c, --config FILE[\s\S]*--workers N/)
    assert.match((await cli('check', '-h')).out, /-c, --config FILE/)
    const init = (await cli('init', '--help')).out
    for (const option of ['-c, --config FILE', '--service NAME', '--upstream URL', '--listen HOST:PORT']) assert.ok(init.includes(option), option)
    assert.match((await cli('health', '--help')).out, /http:\/\/127\.0\.0\.1:9901\/healthz/)
  })

  it('--help wins wherever it stands among the options, and nothing runs', async () => {
    const { code, out } = await cli('run', '-c', '/nonexistent/pillion.toml', '--help')
    assert.equal(code, 0)
    assert.equal(out, COMMAND_HELP.run)
    assert.equal((await cli('init', '--service', 'x', '-h')).out, COMMAND_HELP.init)
  })

  it('pillion help COMMAND is the same text', async () => {
    for (const command of COMMANDS) assert.equal((await cli('help', command)).out, COMMAND_HELP[command])
  })

  it('pillion help, --help, -h and no command print the command list; an unknown command prints it to stderr with exit 2', async () => {
    for (const args of [['help'], ['--help'], ['-h'], [], ['help', '--help']]) {
      const { code, out } = await cli(...args)
      assert.equal(code, 0, args.join(' '))
      for (const command of COMMANDS) assert.match(out, new RegExp(`pillion ${command}\\b`), `${args.join(' ')} lists ${command}`)
    }
    for (const args of [['frob'], ['frob', '--help'], ['help', 'frob']]) {
      const { code, out, err } = await cli(...args)
      assert.equal(code, 2, args.join(' '))
      assert.equal(out, '')
      assert.match(err, /^pillion: unknown command "frob"\n/)
      for (const command of COMMANDS) assert.match(err, new RegExp(`pillion ${command}\\b`))
    }
  })

  it('a --help after -- belongs to the program pillion starts, not to pillion', () => {
    assert.equal(asksForHelp(['-c', 'p.toml', '--', 'app', '--help']), false)
    assert.equal(asksForHelp(['-h', '--', 'app']), true)
    assert.equal(asksForHelp(['--helpful']), false)
  })
})

describe('pillion health says why, in its own words', () => {
  let server: Server
  let base: string
  let closed: number

  before(async () => {
    server = createServer((req, res) => {
      res.statusCode = req.url === '/readyz' ? 503 : 200
      res.end()
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const spare = createServer()
    await new Promise<void>((resolve) => spare.listen(0, '127.0.0.1', resolve))
    closed = (spare.address() as AddressInfo).port
    await new Promise((resolve) => spare.close(resolve))
  })

  after(() => new Promise((resolve) => server.close(resolve)))

  it('exits 0 quietly on 2xx', async () => {
    assert.deepEqual(await cli('health', `${base}/healthz`), { code: 0, out: '', err: '' })
  })

  it('says what a non-2xx answer was', async () => {
    const { code, err } = await cli('health', `${base}/readyz`)
    assert.equal(code, 1)
    assert.equal(err, `pillion health: ${base}/readyz answered 503 Service Unavailable`)
  })

  it('says connection refused when nothing listens, not a raw fetch error', async () => {
    const { code, err } = await cli('health', `http://127.0.0.1:${closed}/healthz`)
    assert.equal(code, 1)
    assert.match(err, new RegExp(`^pillion health: cannot reach http://127\\.0\\.0\\.1:${closed}/healthz: connection refused`))
    assert.doesNotMatch(err, /fetch failed|ECONNREFUSED/)
  })

  it('refuses what is not an http URL, and extra arguments, with exit 2', async () => {
    assert.deepEqual(await cli('health', 'localhost:9901'), {
      code: 2,
      out: '',
      err: 'pillion health: expected an http:// or https:// URL like http://127.0.0.1:9901/healthz, got "localhost:9901"',
    })
    assert.equal((await cli('health', `${base}/healthz`, 'extra')).code, 2)
  })

  it('words the errors of Node, Bun and Deno alike', () => {
    const node = Object.assign(new TypeError('fetch failed'), { cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9901'), { code: 'ECONNREFUSED' }) })
    const bun = Object.assign(new TypeError('ECONNREFUSED: Unable to connect. Is the computer able to access the url?'), { code: 'ECONNREFUSED' })
    const deno = Object.assign(new TypeError('fetch failed'), {
      cause: new Error('error sending request for url (http://127.0.0.1:9901/healthz): client error (Connect): tcp connect error: Connection refused (os error 111)'),
    })
    for (const error of [node, bun, deno]) assert.match(unreachable(error), /^connection refused/)
    const dns = Object.assign(new TypeError('fetch failed'), { cause: new Error('error sending request: client error (Connect): dns error: failed to lookup address information') })
    assert.equal(unreachable(dns), 'host not found')
    assert.equal(unreachable(Object.assign(new TypeError('getaddrinfo ENOTFOUND x.invalid'), { code: 'ENOTFOUND' })), 'host not found')
    assert.equal(unreachable(new DOMException('The operation timed out.', 'TimeoutError')), 'no answer within 2s')
    assert.equal(unreachable(Object.assign(new TypeError('fetch failed'), { cause: new Error('something odd') })), 'something odd')
  })
})

describe('drain (pillion run on SIGTERM, or once its app has exited)', () => {
  const outcome = async (shutdown: () => Promise<boolean>) => {
    const out: string[] = []
    const logged: Array<{ level: string; msg: string; fields?: Record<string, unknown> }> = []
    const code = await drain({ shutdown }, { writeOut: (text) => void out.push(text) }, { log: (level, msg, fields) => void logged.push({ level, msg, fields }) })
    return { code, out, logged }
  }

  it('says how the gateway stopped, and exits 0', async () => {
    assert.deepEqual(await outcome(async () => true), { code: 0, out: ['pillion: stopped'], logged: [] })
    assert.deepEqual((await outcome(async () => false)).out, ['pillion: stopped after shutdown grace'])
  })

  it('a shutdown step that throws is logged and still ends the run, with 1', async () => {
    const { code, out, logged } = await outcome(async () => {
      throw new TypeError("Cannot read properties of undefined (reading 'count')")
    })
    assert.equal(code, 1)
    assert.deepEqual(out, [])
    assert.deepEqual(logged, [{ level: 'error', msg: 'shutdown failed', fields: { error: "Cannot read properties of undefined (reading 'count')" } }])
  })
})
