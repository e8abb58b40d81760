import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { loadConfigText } from '../../../src/config/load.ts'
import type { Runtime } from '../../../src/core/host.ts'
import { openPolicyFeed } from '../../../src/control/policy-feed.ts'
import { readSettled } from '../../../src/control/settled-read.ts'

/** A file read that answers each text in turn, then the last one for good; counts the reads. */
function reads(...texts: string[]) {
  let count = 0
  return {
    read: async () => texts[Math.min(count++, texts.length - 1)]!,
    get count() {
      return count
    },
  }
}

const immediate = { setTimeout: (callback: () => void) => queueMicrotask(callback) }

const policy = (maxBody: string, limits = true) => `[gateway]
service = "torn"

[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"

[upstreams.app]
endpoints = ["http://127.0.0.1:9"]

[[routes]]
listener = "ingress"
path = "/*"
upstream = "app"
${limits ? `limits = { max_body = "${maxBody}" }\n` : ''}`

describe('reading a policy file that may be written in place', () => {
  it('a text counts once two reads agree', async () => {
    const file = reads('a = 1\n')
    assert.equal(await readSettled(file.read, immediate), 'a = 1\n')
    assert.equal(file.count, 2)
  })

  it('a read that lands mid-write is read past: the text that settles is the one returned', async () => {
    const file = reads('a = 1\n', 'a = 2\nb', 'a = 2\nb = 3\n')
    assert.equal(await readSettled(file.read, immediate), 'a = 2\nb = 3\n')
    assert.equal(file.count, 4)
  })

  it('a file that never settles fails the read', async () => {
    let n = 0
    await assert.rejects(
      readSettled(async () => `a = ${n++}\n`, immediate),
      /^Error: it kept changing while it was read \(20 reads 10 ms apart\); it is read again at its next change$/,
    )
    assert.equal(n, 20)
  })

  it('the policy feed of a local file never hands on a torn text, even one that is a valid policy', async () => {
    const whole = policy('512b')
    const torn = policy('', false)
    assert.doesNotThrow(() => loadConfigText(torn, 'torn.toml'), 'the torn text would load')
    const file = reads(torn, whole)
    const host = {
      readTextFile: file.read,
      readTextFileSync: () => whole,
      writeTextFile: async () => {},
      watchFile: () => () => {},
      env: () => undefined,
    } as unknown as Pick<Runtime, 'readTextFile' | 'readTextFileSync' | 'writeTextFile' | 'watchFile' | 'env'>
    const logger = { log: () => {} }
    const feed = await openPolicyFeed('/etc/pillion.toml', { config: loadConfigText(whole, '/etc/pillion.toml'), text: whole }, host, logger)
    assert.equal(await feed.read(), whole)
  })
})
