import * as v from 'valibot'
import { describeValue, expectedGot } from '../../core/config-error.ts'
import { arrayOf, table } from '../../core/schema-kit.ts'
import type { RouteContext } from '../policy.ts'
import { compileTemplate, parseTemplate, type HeaderTemplate } from './header-template.ts'

/**
 * `set`, `add` and `remove` on one side of the exchange, the table request_headers and response_headers
 * share: its schema, its normalized value and its compiled form.
 */

/** As written in the file, with lower-case names: values are templates, compiled when the chain is built. */
export interface HeaderEdits {
  /** Replaces the header; a value that comes out empty removes it. */
  set: Record<string, string>
  /** Adds a value beside the header's others; one that comes out empty adds nothing. */
  add: Record<string, string>
  remove: string[]
}

/** What the layers run: names with constant values or functions of the exchange, in the order remove, set, add. */
export interface CompiledEdits {
  remove: readonly string[]
  set: ReadonlyArray<readonly [name: string, value: HeaderTemplate]>
  add: ReadonlyArray<readonly [name: string, value: HeaderTemplate]>
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/i
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade'])
const NAME_EXPECTED = 'an end-to-end header name like "x-user"'

/** Why a header may not be edited, or undefined when it may. */
function notEditable(name: string): string | undefined {
  const lower = name.toLowerCase()
  if (HOP_BY_HOP.has(lower) || lower.startsWith('proxy-')) return 'a hop-by-hop header belongs to one connection and is never passed on'
  if (lower === 'host') return 'the upstream sees the Host of its endpoint URL'
  if (lower === 'content-length') return "the body's length is the runtime's to frame"
  return undefined
}

/** An end-to-end header name a policy may set or remove upstream (not hop-by-hop, Host or Content-Length). */
export function headerName() {
  return v.pipe(
    v.string((issue) => expectedGot(NAME_EXPECTED, issue.input)),
    v.regex(TOKEN, (issue) => expectedGot(NAME_EXPECTED, issue.input)),
    v.rawCheck(({ dataset, addIssue }) => {
      if (!dataset.typed) return
      const why = notEditable(dataset.value)
      if (why !== undefined) addIssue({ message: `${expectedGot(NAME_EXPECTED, dataset.value)}: ${why}` })
    }),
  )
}

/** Why a value cannot be a header value template, or undefined when it can. */
export function valueProblem(text: string): string | undefined {
  if (text === '') return 'expected a non-empty header value, got ""; to remove a header, list it in remove'
  if (/[\r\n]/.test(text)) return expectedGot('a header value on one line (no CR or LF)', text)
  if (/[^\t\x20-\x7e]/.test(text)) return expectedGot('a header value of printable ASCII', text)
  const parsed = parseTemplate(text)
  return 'problem' in parsed ? parsed.problem : undefined
}

function headerValue() {
  return v.pipe(
    v.string((issue) => expectedGot('a header value (a string)', issue.input)),
    v.rawCheck(({ dataset, addIssue }) => {
      if (!dataset.typed) return
      const problem = valueProblem(dataset.value)
      if (problem !== undefined) addIssue({ message: problem })
    }),
  )
}

function headerValues(example: string) {
  return v.record(headerName(), headerValue(), (issue) => expectedGot(`a table like ${example}`, issue.input))
}

const lower = (name: string) => name.toLowerCase()

/** Names that repeat an earlier one but for case: [name, the earlier one]. */
function repeated(names: readonly string[]): Array<[name: string, first: string]> {
  const seen = new Map<string, string>()
  const found: Array<[string, string]> = []
  for (const name of names) {
    const first = seen.get(lower(name))
    if (first === undefined) seen.set(lower(name), name)
    else found.push([name, first])
  }
  return found
}

/**
 * `{ set = { NAME = VALUE }, add = { NAME = VALUE }, remove = [NAME] }`; an empty table edits nothing
 * (a route's way to turn off the rules of [defaults]). A name given twice in set or in add, in
 * another case, is a load error: one of the two values would be lost.
 *
 * @example headerEditsSchema('{ "x-user" = "${jwt.sub}" }')
 */
export function headerEditsSchema(example: string) {
  return v.pipe(
    table({
      set: v.optional(headerValues(example), {}),
      add: v.optional(headerValues(example), {}),
      remove: v.optional(arrayOf(headerName()), []),
    }),
    v.rawCheck(({ dataset, addIssue }) => {
      if (!dataset.typed) return
      const rules = dataset.value
      for (const list of ['set', 'add'] as const) {
        for (const [name, first] of repeated(Object.keys(rules[list]))) {
          addIssue({
            message: `${describeValue(name)} is also given as ${describeValue(first)}; header names ignore case, so one of the two values would be lost`,
            path: [
              { type: 'object', origin: 'value', input: rules, key: list, value: rules[list] },
              { type: 'object', origin: 'key', input: rules[list], key: name, value: name },
            ],
          })
        }
      }
    }),
    v.transform(
      (t): HeaderEdits => ({
        set: Object.fromEntries(Object.entries(t.set).map(([name, value]) => [lower(name), value])),
        add: Object.fromEntries(Object.entries(t.add).map(([name, value]) => [lower(name), value])),
        remove: t.remove.map(lower),
      }),
    ),
  )
}

/** Whether the edits change nothing (the layer is then left out). */
export function editsNothing(edits: HeaderEdits): boolean {
  return edits.remove.length === 0 && Object.keys(edits.set).length === 0 && Object.keys(edits.add).length === 0
}

/** The edits with their values compiled for this route (`${route}` and `${upstream}` are the route's). */
export function compileEdits(edits: HeaderEdits, context: RouteContext): CompiledEdits {
  const route = { route: context.route.name, upstream: context.upstream.config.name }
  const compile = (values: Record<string, string>) =>
    Object.entries(values).map(([name, value]): readonly [string, HeaderTemplate] => [name, compileTemplate(value, route)])
  return { remove: edits.remove, set: compile(edits.set), add: compile(edits.add) }
}
