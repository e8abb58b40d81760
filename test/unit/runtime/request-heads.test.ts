import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { RequestHeads } from '../../../src/runtime/request-heads.ts'

/** Feeds the text split at every position and records when heads start and end. */
function follow(text: string, split?: number): string[] {
  const seen: string[] = []
  const heads = new RequestHeads((inHead) => seen.push(inHead ? 'start' : 'end'))
  const bytes = new TextEncoder().encode(text)
  const at = split ?? bytes.length
  heads.feed(bytes.subarray(0, at))
  heads.feed(bytes.subarray(at))
  seen.push(heads.inHead ? 'in head' : 'not in head')
  return seen
}

describe('following request heads on a connection', () => {
  it('the first head is being read from the start, and ends at its blank line', () => {
    assert.deepEqual(follow('GET / HTTP/1.1\r\nHost: x\r\n'), ['in head'])
    assert.deepEqual(follow('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), ['end', 'not in head'])
  })

  it('skips bodies by Content-Length and chunked coding, split anywhere, and sees the next head start', () => {
    const two = 'POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloPOST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /c HTTP/1.1\r\nX-Slow: '
    for (let split = 0; split <= two.length; split++) {
      assert.deepEqual(follow(two, split), ['end', 'start', 'end', 'start', 'in head'], `split at ${split}`)
    }
  })

  it('a body that looks like a head is not one', () => {
    assert.deepEqual(follow('POST / HTTP/1.1\r\nContent-Length: 18\r\n\r\nGET / HTTP/1.1\r\n\r\n'), ['end', 'not in head'])
  })

  it('stops following at an upgrade, CONNECT or a length it cannot read: the server answers those itself', () => {
    assert.deepEqual(follow('GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\nGET /x HTTP/1.1\r\n'), ['end', 'not in head'])
    assert.deepEqual(follow('CONNECT a:443 HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\n'), ['end', 'not in head'])
    assert.deepEqual(follow('POST / HTTP/1.1\r\nContent-Length: x\r\n\r\nGET /x HTTP/1.1\r\n'), ['end', 'not in head'])
  })
})
