import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { copyHeaders, deleteHeaders } from '../../../src/core/headers-copy.ts'
import { NodeHeaders } from '../../../src/runtime/node-headers.ts'

type Step = (headers: Headers) => unknown

/** Runs the same steps on undici's Headers and on a NodeHeaders: every result, thrown error and final iteration must agree. */
function agree(raw: string[], steps: Step[]): void {
  const native = new Headers()
  for (let i = 0; i < raw.length; i += 2) native.append(raw[i]!, raw[i + 1]!)
  const ours = NodeHeaders.fromRaw(raw) as unknown as Headers
  for (const step of steps) assert.deepEqual(outcome(() => step(ours)), outcome(() => step(native)), String(step))
  assert.deepEqual([...ours], [...native])
  assert.deepEqual(ours.getSetCookie(), native.getSetCookie())
  assert.deepEqual([...ours.keys()], [...native.keys()])
  assert.deepEqual([...ours.values()], [...native.values()])
  const seen: string[] = []
  ours.forEach((value, name, self) => seen.push(name, value, String(self === ours)))
  const expected: string[] = []
  native.forEach((value, name, self) => expected.push(name, value, String(self === native)))
  assert.deepEqual(seen, expected)
}

function outcome(run: () => unknown): unknown {
  try {
    return { value: run() }
  } catch (error) {
    return { error: (error as Error).constructor.name, message: (error as Error).message }
  }
}

describe("NodeHeaders behave as undici's Headers", () => {
  const raw = ['Host', 'a.test', 'X-Foo', '1', 'Cookie', 'a=1', 'x-foo', '2', 'cookie', 'b=2', 'Set-Cookie', 's=1', 'set-cookie', 't=2', 'Accept', '']

  it('reads: get joins repeats (Cookie with "; "), has, Set-Cookie apart, iteration sorted', () => {
    agree(raw, [(h) => h.get('x-FOO'), (h) => h.get('cookie'), (h) => h.get('set-cookie'), (h) => h.get('accept'), (h) => h.get('missing'), (h) => h.has('HOST'), (h) => h.has('nope')])
  })

  it('writes: set replaces every copy, delete removes them, append adds, values trimmed', () => {
    agree(raw, [
      (h) => h.set('X-Foo', ' 3\t'),
      (h) => h.get('x-foo'),
      (h) => h.delete('cookie'),
      (h) => h.append('Via', '1.1 a'),
      (h) => h.append('via', '1.1 b'),
      (h) => h.set('set-cookie', 'only=1'),
      (h) => h.delete('absent'),
      (h) => h.set('new', 'v'),
    ])
  })

  it('deletes a set of names in one pass as deleting each one does', () => {
    agree(raw, [(h) => deleteHeaders(h, new Set(['cookie', 'x-foo', 'absent', 'set-cookie'])), (h) => h.get('cookie'), (h) => h.get('host')])
    agree(raw, [(h) => deleteHeaders(h, new Set()), (h) => deleteHeaders(h, new Set(['host', 'accept', 'x-foo', 'cookie', 'set-cookie']))])
  })

  it('refuses what undici refuses, with the same TypeError', () => {
    agree(raw, [
      (h) => h.append('a b', 'x'),
      (h) => h.append('a', 'x\ny'),
      (h) => h.set('a', 'x\0y'),
      (h) => h.set('a', '€'),
      (h) => h.append('é b', '€'),
      (h) => h.get('a b'),
      (h) => h.has(''),
      (h) => h.delete('é'),
    ])
  })

  it('is a Headers to the core and to undici: instanceof, copies, and the Headers constructor', () => {
    const ours = NodeHeaders.fromRaw(raw) as unknown as Headers
    assert.ok(ours instanceof Headers)
    const copy = copyHeaders(ours)
    assert.ok(copy instanceof NodeHeaders)
    copy.delete('host')
    assert.equal(ours.get('host'), 'a.test')
    assert.deepEqual([...new Headers(ours)], [...ours])
    assert.deepEqual([...new Response(null, { headers: ours }).headers], [...ours])
  })

  it("flat() is what undici's Headers iterate, as one list", () => {
    const ours = NodeHeaders.fromRaw(raw)
    assert.deepEqual(ours.flat(), [...(ours as unknown as Headers)].flat())
    assert.deepEqual(NodeHeaders.fromParsed({ b: '1', a: ['2', '3'], 'set-cookie': ['x=1', 'y=2'] }).flat(), ['a', '2, 3', 'b', '1', 'set-cookie', 'x=1', 'set-cookie', 'y=2'])
  })

  it("property: any headers in any order iterate, flatten and join as undici's do", () => {
    const name = fc.constantFrom('Cookie', 'cookie', 'Set-Cookie', 'set-cookie', 'A', 'a', 'b', 'B-c', 'host', 'x-forwarded-for', 'zz', 'a-')
    const value = fc.stringMatching(/^[\x21-\x7e]{0,6}$/)
    fc.assert(
      fc.property(fc.array(fc.tuple(name, value), { maxLength: 16 }), (pairs) => {
        const raw = pairs.flat()
        agree(raw, [])
        const ours = NodeHeaders.fromRaw(raw)
        const native = new Headers()
        for (const [n, v] of pairs) native.append(n, v)
        assert.deepEqual(ours.flat(), [...native].flat())
      }),
      { numRuns: 500 },
    )
  })
})
