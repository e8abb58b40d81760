// schema/pillion.schema.json, the JSON Schema editors complete the policy file with: it is what
// scripts/schema.ts writes from the valibot schemas today, and it refuses what the loader refuses, as
// far as JSON Schema can say it (unknown keys, wrong types, enum values, missing keys).
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { Ajv } from 'ajv'
import toml from 'toml'
import { loadConfigText } from '../../src/config/load.ts'
import { ConfigError } from '../../src/core/config-error.ts'
import { BASE_SCHEMA_FILE, baseJsonSchemaText, policyJsonSchemaText, SCHEMA_FILE } from '../../scripts/schema.ts'

const committed = readFileSync(SCHEMA_FILE, 'utf8')
type Node = { type?: unknown; additionalProperties?: unknown; items?: Node; properties?: Record<string, Node> }
const schema = JSON.parse(committed) as Node & { properties: Record<string, Node> }
const validate = new Ajv({ allErrors: true }).compile(schema)

const VALID = `
[gateway]
service = "orders"
shutdown_grace = "5s"

[listeners.ingress]
listen = "127.0.0.1:8080"
direction = "ingress"

[upstreams.local]
endpoints = ["http://127.0.0.1:3000"]
connect_timeout = "500ms"

[defaults]
timeout = "2s"
retry = { attempts = 2 }

[[routes]]
listener = "ingress"
path = "/api/*"
upstream = "local"
limits = { max_body = "64kb" }
`

/** Each one mistake away from VALID. */
const INVALID: Record<string, string> = {
  'an unknown key in [gateway]': VALID.replace('service = "orders"', 'service = "orders"\nservise = "orders"'),
  'an unknown key in a route': VALID.replace('upstream = "local"', 'upstream = "local"\nretries = 3'),
  'an unknown key in a policy table': VALID.replace('retry = { attempts = 2 }', 'retry = { attempt = 2 }'),
  'an unknown top-level table': VALID + '\n[gatway]\nservice = "x"\n',
  'a number where a duration string goes': VALID.replace('shutdown_grace = "5s"', 'shutdown_grace = 5'),
  'a string where a whole number goes': VALID.replace('retry = { attempts = 2 }', 'retry = { attempts = "2" }'),
  'a duration without a unit': VALID.replace('timeout = "2s"', 'timeout = "2"'),
  'a size that is no size': VALID.replace('max_body = "64kb"', 'max_body = "lots"'),
  'a bad enum value': VALID.replace('direction = "ingress"', 'direction = "sideways"'),
  'a missing required key in [gateway]': VALID.replace('service = "orders"', ''),
  'a missing required key in a route': VALID.replace('path = "/api/*"', ''),
  'a missing [gateway]': VALID.replace('[gateway]\nservice = "orders"\nshutdown_grace = "5s"\n', ''),
}

describe('schema/pillion.schema.json', () => {
  it('is what `npm run schema` writes now (run it after changing a schema)', () => {
    assert.equal(committed, policyJsonSchemaText(), 'schema/pillion.schema.json is stale: run `npm run schema`')
  })

  it('describes the file as written: strict tables, strings for durations', () => {
    assert.equal(schema.additionalProperties, false)
    assert.equal(schema.properties['gateway']?.additionalProperties, false)
    assert.equal(schema.properties['routes']?.items?.additionalProperties, false)
    assert.equal(schema.properties['gateway']?.properties?.['shutdown_grace']?.type, 'string')
  })

  it('takes the valid text, as the loader does', () => {
    loadConfigText(VALID, 'valid.toml')
    assert.ok(validate(toml.parse(VALID)), JSON.stringify(validate.errors, null, 2))
  })

  for (const [mistake, text] of Object.entries(INVALID)) {
    it(`refuses ${mistake}, as the loader does`, () => {
      assert.throws(() => loadConfigText(text, 'invalid.toml'), ConfigError)
      assert.equal(validate(toml.parse(text)), false, 'the JSON Schema accepted it')
    })
  }
})

describe('schema/pillion-base.schema.json', () => {
  it('is what `npm run schema` writes now (run it after changing a schema)', () => {
    assert.equal(readFileSync(BASE_SCHEMA_FILE, 'utf8'), baseJsonSchemaText(), 'schema/pillion-base.schema.json is stale: run `npm run schema`')
  })

  it('refuses what a base cannot lock', () => {
    const validateBase = new Ajv({ allErrors: true }).compile(JSON.parse(readFileSync(BASE_SCHEMA_FILE, 'utf8')) as object)
    assert.ok(validateBase(toml.parse('[defaults]\nlimits = { max_body = "1mb" }\n[[routes]]\nname = "admin"\nip = { allow = ["10.0.0.0/8"] }\n')))
    assert.equal(validateBase(toml.parse('[listeners.x]\nlisten = "127.0.0.1:1"\ndirection = "ingress"\n')), false)
    assert.equal(validateBase(toml.parse('[[routes]]\nname = "a"\npath = "/x"\n')), false)
  })
})
