import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Hono } from 'hono'
import { CatchAllRouter } from '../../../src/listener/catch-all-router.ts'

describe('CatchAllRouter', () => {
  it("gives a Hono app's one catch-all handler every method and path, HEAD without a body", async () => {
    const app = new Hono({ router: new CatchAllRouter() })
    app.all('*', (c) => c.text(`${c.req.method} ${new URL(c.req.url).pathname}${new URL(c.req.url).search}`))
    for (const [method, path] of [['GET', '/'], ['POST', '/a/b?c=1'], ['DELETE', '//x/../y'], ['PATCH', '/%2e%2e/']]) {
      const response = await app.fetch(new Request(`http://gw.local${path}`, { method }))
      assert.equal(await response.text(), `${method} ${new URL(`http://gw.local${path}`).pathname}${new URL(`http://gw.local${path}`).search}`)
    }
    const head = await app.fetch(new Request('http://gw.local/x', { method: 'HEAD' }))
    assert.equal(head.status, 200)
    assert.equal(await head.text(), '')
  })

  it('refuses any other route, and a second one', () => {
    assert.throws(() => new Hono({ router: new CatchAllRouter() }).get('/x', (c) => c.text('')), /cannot be added/)
    const app = new Hono({ router: new CatchAllRouter() })
    app.all('*', (c) => c.text(''))
    assert.throws(() => app.all('*', (c) => c.text('')), /cannot be added/)
  })

  it('has no handler before one is added: Hono answers 404', async () => {
    const response = await new Hono({ router: new CatchAllRouter() }).fetch(new Request('http://gw.local/'))
    assert.equal(response.status, 404)
  })
})
