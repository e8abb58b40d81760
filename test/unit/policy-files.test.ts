import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { describe, it } from 'node:test'
import { loadConfigText } from '../../src/config/load.ts'

const dir = resolve(import.meta.dirname, '../../policies')
const files = readdirSync(dir).filter((name) => name.endsWith('.toml'))

describe('every example under policies/ loads', () => {
  it('has examples to check', () => assert.ok(files.length >= 2))
  for (const name of files) {
    it(name, () => {
      const config = loadConfigText(readFileSync(join(dir, name), 'utf8'), name)
      assert.ok(Object.keys(config.listeners).length > 0)
    })
  }
})
