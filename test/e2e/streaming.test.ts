import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { request as httpRequest } from 'node:http'
import { describe, it } from 'node:test'
import { answerWithDigest, startGateway, startUpstream, targets } from './harness.ts'

const SIZE = 200 * 1024 * 1024
const CHUNK = Buffer.alloc(256 * 1024, 0x5a)
/** What the gateway may grow by while 400 MB pass through it: garbage awaiting GC, never a whole body. */
const RSS_GROWTH_LIMIT_KB = 100 * 1024

function policy(upstreamUrl: string): string {
  return `
[gateway]
service = "streaming"
admin = "127.0.0.1:0"

[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"

[upstreams.local]
endpoints = ["${upstreamUrl}"]

[defaults]
timeout = "2m"

[[routes]]
listener = "ingress"
path = "/*"
upstream = "local"
`
}

/** Writes SIZE bytes with backpressure, so the test itself never holds the body in memory. */
function writeStream(writable: NodeJS.WritableStream, done: () => void): void {
  let sent = 0
  const pump = () => {
    while (sent < SIZE) {
      sent += CHUNK.length
      if (!writable.write(CHUNK)) return void writable.once('drain', pump)
    }
    done()
  }
  pump()
}

const expectedDigest = (() => {
  const hash = createHash('sha256')
  for (let sent = 0; sent < SIZE; sent += CHUNK.length) hash.update(CHUNK)
  return hash.digest('hex')
})()

for (const target of targets()) {
  describe(`streaming on ${target.name}`, { skip: target.missing }, () => {
    it('streams a 200 MB upload and a 200 MB download with bounded memory', { timeout: 120_000 }, async () => {
      const upstream = await startUpstream((req, res) => {
        if (req.method === 'POST') {
          answerWithDigest(req, res)
        } else {
          res.writeHead(200, { 'content-length': SIZE })
          writeStream(res, () => res.end())
        }
      })
      const gateway = await startGateway(target, policy(upstream.url))
      const idleKb = gateway.rssKb()
      try {
        const base = gateway.listeners.ingress!
        const uploaded = await new Promise<string>((resolve, reject) => {
          const req = httpRequest(`${base}/upload`, { method: 'POST', agent: false, headers: { 'transfer-encoding': 'chunked' } }, (res) => {
            let text = ''
            res.on('data', (d) => (text += d))
            res.on('end', () => resolve(text))
          })
          req.on('error', reject)
          writeStream(req, () => req.end())
        })
        assert.deepEqual(JSON.parse(uploaded), { bytes: SIZE, sha256: expectedDigest })

        const downloaded = await new Promise<{ bytes: number; sha256: string }>((resolve, reject) => {
          httpRequest(`${base}/download`, { agent: false }, (res) => {
            const hash = createHash('sha256')
            let bytes = 0
            res.on('data', (c: Buffer) => {
              bytes += c.length
              hash.update(c)
            })
            res.on('end', () => resolve({ bytes, sha256: hash.digest('hex') }))
            res.on('error', reject)
          })
            .on('error', reject)
            .end()
        })
        assert.deepEqual(downloaded, { bytes: SIZE, sha256: expectedDigest })
        const growth = gateway.peakRssKb() - idleKb
        assert.ok(growth < RSS_GROWTH_LIMIT_KB, `peak RSS ${Math.round(growth / 1024)} MB above the ${Math.round(idleKb / 1024)} MB it started with`)
      } finally {
        await gateway.stop()
        await upstream.close()
      }
    })
  })
}
