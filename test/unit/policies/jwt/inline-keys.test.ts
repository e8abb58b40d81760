import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { exportJWK, generateKeyPair } from 'jose'
import { unusableInlineKeys } from '../../../../src/policies/jwt/inline-keys.ts'
import type { JwtPolicy } from '../../../../src/policies/jwt/index.ts'

const rsa = await exportJWK((await generateKeyPair('RS256')).publicKey)
const ec = await exportJWK((await generateKeyPair('ES256')).publicKey)
const policy = (keys: Array<Record<string, unknown>>, algorithms = ['RS256', 'ES256']): JwtPolicy =>
  ({ keys, algorithms, requiredClaims: [], requireExpiration: true, clockSkewMs: 0, forwardClaims: [], forwardToken: false }) as JwtPolicy

describe('inline JWT keys checked before the first token', () => {
  test('usable RSA and EC keys, with or without their own alg, pass', async () => {
    assert.deepEqual(await unusableInlineKeys(policy([rsa, { ...ec, alg: 'ES256' }])), [])
  })

  test('a key jose cannot import, or one no allowed algorithm takes, is named by position', async () => {
    const problems = await unusableInlineKeys(policy([rsa, { ...ec, x: 'AAAA' }, ec], ['RS256']))
    assert.equal(problems.length, 2)
    assert.match(problems[0]!, /^keys\[1\]: no allowed algorithm \(RS256\) takes a key of type "EC"$/)
    assert.match(problems[1]!, /^keys\[2\]: no allowed algorithm/)
    const broken = await unusableInlineKeys(policy([{ ...ec, x: 'AAAA' }]))
    assert.match(broken[0]!, /^keys\[0\]: cannot be used as a ES256 key: /)
  })
})
