import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { redactConfig } from '../../../../src/admin/redact.ts'
import { loadConfigText } from '../../../../src/config/load.ts'
import type { RedisSettings } from '../../../../src/policies/rate-limit/redis-config.ts'
import { ONE_ROUTE, rejection } from '../../fakes/policy-text.ts'

const redis = (body: string) => `${ONE_ROUTE}\n[redis]\n${body}\n`
const problemsOf = (body: string) => rejection(redis(body)).map((problem) => `${problem.path}: ${problem.message}`)

describe('[redis]: one Redis, a Cluster or Sentinel', () => {
  test('cluster: seed node URLs, on the defaults', () => {
    const config = loadConfigText(redis('cluster = ["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"]'), 'x.toml')
    assert.deepEqual(config.redis, { cluster: ['redis://10.0.0.1:6379', 'redis://10.0.0.2:6379'], onError: 'allow', timeoutMs: 50 } satisfies RedisSettings)
  })

  test('sentinels: addresses, the master name, and the credentials for master and Sentinel', () => {
    const config = loadConfigText(
      redis('sentinels = ["10.0.0.5:26379", "[fd00::6]:26379"]\nmaster_name = "quotas"\npassword = "hunter2"\nsentinel_password = "s3cret"\non_error = "deny"'),
      'x.toml',
    )
    assert.deepEqual(config.redis, {
      sentinels: ['10.0.0.5:26379', '[fd00::6]:26379'],
      masterName: 'quotas',
      password: 'hunter2',
      sentinelPassword: 's3cret',
      onError: 'deny',
      timeoutMs: 50,
    } satisfies RedisSettings)
  })

  test('exactly one of url, cluster and sentinels; each mistake at its key path', () => {
    const cases: Array<[string, string[]]> = [
      ['on_error = "deny"', ['redis: expected exactly one of url (one Redis), cluster (seed nodes of a Redis Cluster) or sentinels (with master_name)']],
      ['url = "redis://a:6379"\ncluster = ["redis://b:6379"]', ['redis.cluster: set only one of url, cluster and sentinels (url and cluster are both set)']],
      [
        'url = "redis://a:6379"\ncluster = ["redis://b:6379"]\nsentinels = ["c:26379"]\nmaster_name = "q"',
        [
          'redis.cluster: set only one of url, cluster and sentinels (url and cluster and sentinels are both set)',
          'redis.sentinels: set only one of url, cluster and sentinels (url and cluster and sentinels are both set)',
        ],
      ],
      ['sentinels = ["10.0.0.5:26379"]', ['redis.master_name: required key missing: sentinels need the master_name Sentinel monitors, like "quotas"']],
      ['cluster = []', ['redis.cluster: expected at least one seed node URL']],
      ['cluster = ["10.0.0.1:6379"]', ['redis.cluster[0]: expected a node URL like "redis://10.0.0.1:6379" or "rediss://user:password@10.0.0.1:6380", got "10.0.0.1:6379"']],
      ['cluster = ["redis://a:6379", "rediss://b:6380"]', ['redis.cluster: expected every seed node on the same scheme: all redis:// or all rediss://']],
      ['sentinels = ["redis://10.0.0.5:26379"]\nmaster_name = "q"', ['redis.sentinels[0]: expected a Sentinel address "host:port" like "10.0.0.5:26379", got "redis://10.0.0.5:26379"']],
      ['sentinels = ["10.0.0.5:99999"]\nmaster_name = "q"', ['redis.sentinels[0]: expected a Sentinel address "host:port" like "10.0.0.5:26379", got "10.0.0.5:99999"']],
      [
        'url = "redis://a:6379"\npassword = "x"',
        ['redis.password: password goes with sentinels only; with url, credentials go in the URL ("rediss://user:password@host:6380"), got "x"'],
      ],
      ['url = "http://a:6379"', ['redis.url: expected a URL like "redis://127.0.0.1:6379" or "rediss://user:password@host:6380/0", got "http://a:6379"']],
    ]
    for (const [body, expected] of cases) assert.deepEqual(problemsOf(body), expected, body)
  })

  test('GET /config hides the passwords of all three forms', () => {
    const shown = (body: string) => JSON.stringify((redactConfig(loadConfigText(redis(body), 'x.toml')) as { redis: unknown }).redis)
    assert.equal(shown('url = "rediss://app:hunter2@redis.internal:6380/0"'), '{"url":"rediss://app:redacted@redis.internal:6380/0","onError":"allow","timeoutMs":50}')
    assert.equal(
      shown('cluster = ["rediss://app:hunter2@10.0.0.1:6380", "rediss://app:hunter2@10.0.0.2:6380"]'),
      '{"cluster":["rediss://app:redacted@10.0.0.1:6380","rediss://app:redacted@10.0.0.2:6380"],"onError":"allow","timeoutMs":50}',
    )
    assert.equal(
      shown('sentinels = ["10.0.0.5:26379"]\nmaster_name = "quotas"\nusername = "app"\npassword = "hunter2"\nsentinel_password = "s3cret"'),
      '{"sentinels":["10.0.0.5:26379"],"masterName":"quotas","username":"app","password":"[redacted]","sentinelPassword":"[redacted]","onError":"allow","timeoutMs":50}',
    )
  })
})
