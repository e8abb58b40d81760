import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { describe, it } from 'node:test'
import { Ajv } from 'ajv'
import toml from 'toml'
import { loadBaseText } from '../../src/config/base-file.ts'
import { loadConfigText } from '../../src/config/load.ts'

const dir = resolve(import.meta.dirname, '../../policies')
const files = readdirSync(dir).filter((name) => name.endsWith('.toml'))

/** Taplo's (Even Better TOML's) schema directive: the first line of every example. */
const DIRECTIVE = '#:schema ../schema/pillion.schema.json'
const schema = JSON.parse(readFileSync(resolve(import.meta.dirname, '../../schema/pillion.schema.json'), 'utf8')) as object
const validate = new Ajv({ allErrors: true }).compile(schema)

/** What the examples' `${env:…}` and `${file:…}` references (secrets.toml) are given here. */
const EXAMPLE_ENV: Record<string, string> = { ORDERS_UPSTREAM: 'http://127.0.0.1:3000', REDIS_PASSWORD: 'example-password' }
const secrets = {
  env: (name: string) => EXAMPLE_ENV[name],
  readFile: (path: string) => {
    if (!path.startsWith('/run/secrets/')) throw new Error(`no such example secret ${path}`)
    return 'example-secret\n'
  },
}

describe('every example under policies/ loads', () => {
  it('has examples to check', () => assert.ok(files.length >= 2))
  for (const name of files) {
    it(name, () => {
      const config = loadConfigText(readFileSync(join(dir, name), 'utf8'), name, secrets)
      assert.ok(Object.keys(config.listeners).length > 0)
    })
  }
})

describe('every example under policies/ names the JSON Schema and passes it', () => {
  for (const name of files) {
    it(name, () => {
      const text = readFileSync(join(dir, name), 'utf8')
      assert.equal(text.split('\n')[0], DIRECTIVE)
      const valid = validate(toml.parse(text))
      assert.ok(valid, JSON.stringify(validate.errors, null, 2))
    })
  }
})

describe('every locked base under policies/base/ loads as a base, names its JSON Schema and passes it', () => {
  const baseDir = join(dir, 'base')
  const baseSchema = JSON.parse(readFileSync(resolve(import.meta.dirname, '../../schema/pillion-base.schema.json'), 'utf8')) as object
  const validateBase = new Ajv({ allErrors: true }).compile(baseSchema)
  const bases = readdirSync(baseDir).filter((name) => name.endsWith('.toml'))
  it('has one to check', () => assert.ok(bases.length >= 1))
  for (const name of bases) {
    it(`base/${name}`, () => {
      const text = readFileSync(join(baseDir, name), 'utf8')
      assert.equal(text.split('\n')[0], '#:schema ../../schema/pillion-base.schema.json')
      loadBaseText(text, name, secrets, (path) => path)
      assert.ok(validateBase(toml.parse(text)), JSON.stringify(validateBase.errors, null, 2))
    })
  }
})
