import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import * as v from 'valibot'
import { duration, parseDuration, parseRate, parseSize, rate, size } from '../../../src/core/units.ts'

function messagesOf(schema: v.GenericSchema, input: unknown): string[] {
  const result = v.safeParse(schema, input)
  assert.equal(result.success, false, `expected ${JSON.stringify(input)} to be rejected`)
  return (result.issues ?? []).map((issue) => issue.message)
}

describe('parseDuration', () => {
  const good: Array<[string, number]> = [
    ['250ms', 250],
    ['2s', 2000],
    ['1.5s', 1500],
    ['1m', 60_000],
    ['1h', 3_600_000],
    ['0s', 0],
    ['1m30s', 90_000],
  ]
  for (const [text, ms] of good) test(`${text} is ${ms}ms`, () => assert.equal(parseDuration(text), ms))

  for (const text of ['', 'fast', '2', '-1s', '1 s', '1d', 's', '1.s', '2S', '1s ', 'Infinitys']) {
    test(`rejects ${JSON.stringify(text)}`, () => assert.equal(parseDuration(text), undefined))
  }
})

describe('parseSize', () => {
  const good: Array<[string, number]> = [
    ['512b', 512],
    ['1kb', 1024],
    ['64KiB', 65_536],
    ['1mb', 1_048_576],
    ['1MiB', 1_048_576],
    ['1gb', 1_073_741_824],
    ['1GiB', 1_073_741_824],
    ['1.5kb', 1536],
    ['2 KB', 2048],
  ]
  for (const [text, bytes] of good) test(`${text} is ${bytes} bytes`, () => assert.equal(parseSize(text), bytes))

  for (const text of ['', '1', 'kb', '1tb', '-1kb', '1constructor', '1k']) {
    test(`rejects ${JSON.stringify(text)}`, () => assert.equal(parseSize(text), undefined))
  }
})

describe('parseRate', () => {
  const good: Array<[string, number]> = [
    ['100/s', 100],
    ['6000/min', 100],
    ['10/m', 10 / 60],
    ['5/h', 5 / 3600],
    ['1000/d', 1000 / 86_400],
    ['2/sec', 2],
    ['30 / minute', 0.5],
  ]
  for (const [text, perSecond] of good) test(`${text} is ${perSecond}/s`, () => assert.equal(parseRate(text), perSecond))

  for (const text of ['', '100', '100/week', '/s', '-1/s', '1/constructor', '100/']) {
    test(`rejects ${JSON.stringify(text)}`, () => assert.equal(parseRate(text), undefined))
  }
})

describe('valibot helpers', () => {
  test('duration() turns a duration into milliseconds', () => {
    assert.equal(v.parse(duration(), '2s'), 2000)
  })

  test('duration() names the expected format and what it got', () => {
    assert.deepEqual(messagesOf(duration(), 'fast'), ['expected a duration like "250ms", "2s" or "1m", got "fast"'])
    assert.deepEqual(messagesOf(duration(), true), ['expected a duration like "250ms", "2s" or "1m", got true'])
  })

  test('duration() refuses plain numbers, explaining why', () => {
    assert.deepEqual(messagesOf(duration(), 5), [
      'expected a duration like "250ms", "2s" or "1m", got 5 (a plain number has no unit: write "5s" or "5ms")',
    ])
  })

  test('duration() refuses what a timer cannot wait for', () => {
    assert.equal(v.parse(duration(), '596h'), 596 * 3_600_000)
    assert.deepEqual(messagesOf(duration(), '1000h'), ['expected a duration of at most "596h", got "1000h"'])
    assert.deepEqual(messagesOf(duration(), '0.4ms'), ['expected a duration of at least "1ms" (or "0s"), got "0.4ms"'])
    assert.equal(v.parse(duration(), '0ms'), 0)
  })

  test('size() takes a size string or whole bytes', () => {
    assert.equal(v.parse(size(), '1kb'), 1024)
    assert.equal(v.parse(size(), 2048), 2048)
    assert.deepEqual(messagesOf(size(), 'big'), ['expected a size like "512b", "64kb" or "1mb", got "big"'])
    assert.deepEqual(messagesOf(size(), -1), ['expected a size like "512b", "64kb" or "1mb", got -1'])
    assert.deepEqual(messagesOf(size(), 1.5), ['expected a size like "512b", "64kb" or "1mb", got 1.5'])
  })

  test('rate() turns a rate into events per second', () => {
    assert.equal(v.parse(rate(), '6000/min'), 100)
    assert.deepEqual(messagesOf(rate(), 'lots'), ['expected a rate like "100/s", "6000/min" or "5/h", got "lots"'])
    assert.deepEqual(messagesOf(rate(), 100), ['expected a rate like "100/s", "6000/min" or "5/h", got 100'])
  })
})
