import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ConfigError } from '../../../../src/core/config-error.ts'
import { loadConfigText } from '../../../../src/config/load.ts'
import { backoffDelay, retryAfterMs } from '../../../../src/policies/retry/index.ts'
import { RetryBudget } from '../../../../src/policies/retry/budget.ts'
import { IN_AND_U } from '../../fakes/policy-text.ts'

const policyWith = (retry: string) => `${IN_AND_U}[[routes]]
listener = "in"
path = "/*"
upstream = "u"
[routes.retry]
${retry}
`

describe('retry policy', () => {
  it('a newcomer who sets only attempts gets safe defaults', () => {
    const retry = loadConfigText(policyWith('attempts = 3'), 'p.toml').routes[0]!.policies.retry!
    assert.deepEqual(retry, {
      attempts: 3,
      perTryTimeoutMs: 0,
      backoff: { baseMs: 25, maxMs: 250 },
      on: ['connect-failure', 'reset', 'gateway-error'],
      methods: ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE'],
      idempotencyKey: false,
      budget: { ratio: 0.2, minPerSecond: 10, ttlMs: 10_000 },
      maxBodyBytes: 65_536,
    })
  })

  it('reports bad values with their key paths', () => {
    const text = policyWith('attempts = 0\non = ["sometimes"]\nbudget = { ratio = 2 }\nper_try_timeout = 5')
    let error: unknown
    try {
      loadConfigText(text, 'p.toml')
    } catch (caught) {
      error = caught
    }
    assert.ok(error instanceof ConfigError)
    const paths = error.problems.map((p) => p.path)
    assert.deepEqual(paths.sort(), ['routes[0].retry.attempts', 'routes[0].retry.budget.ratio', 'routes[0].retry.on[0]', 'routes[0].retry.per_try_timeout'])
  })

  it('accepts explicit status codes and POST in methods', () => {
    const retry = loadConfigText(policyWith('on = ["5xx", "429", 409]\nmethods = ["get", "POST"]'), 'p.toml').routes[0]!.policies.retry!
    assert.deepEqual(retry.on, ['5xx', '429', '409'])
    assert.deepEqual(retry.methods, ['GET', 'POST'])
  })

  it('is inherited from [defaults]', () => {
    const text = policyWith('attempts = 2').replace('[routes.retry]\nattempts = 2', '').replace('[[routes]]', '[defaults]\nretry = { attempts = 4 }\n[[routes]]')
    assert.equal(loadConfigText(text, 'p.toml').routes[0]!.policies.retry!.attempts, 4)
  })
})

describe('backoff', () => {
  it('grows exponentially from base, capped at max, scaled by the jitter draw', () => {
    assert.equal(backoffDelay(1, 25, 250, 1), 25)
    assert.equal(backoffDelay(2, 25, 250, 1), 50)
    assert.equal(backoffDelay(3, 25, 250, 1), 100)
    assert.equal(backoffDelay(5, 25, 250, 1), 250)
    assert.equal(backoffDelay(3, 25, 250, 0.5), 50)
    assert.equal(backoffDelay(3, 25, 250, 0), 0)
  })
})

describe('Retry-After', () => {
  it('reads delta-seconds and HTTP dates', () => {
    assert.equal(retryAfterMs('3', 0), 3000)
    assert.equal(retryAfterMs(' 0 ', 0), 0)
    const now = Date.parse('Wed, 21 Oct 2015 07:28:00 GMT')
    assert.equal(retryAfterMs('Wed, 21 Oct 2015 07:28:05 GMT', now), 5000)
    assert.equal(retryAfterMs('Wed, 21 Oct 2015 07:27:00 GMT', now), 0)
  })
  it('ignores what it cannot read', () => {
    assert.equal(retryAfterMs(null, 0), undefined)
    assert.equal(retryAfterMs('soon', 0), undefined)
    assert.equal(retryAfterMs('-1', 0), undefined)
  })
})

describe('retry budget', () => {
  it('allows ratio × requests plus the floor, then refuses', () => {
    const budget = new RetryBudget(0.2, 0, 10_000, 0)
    for (let i = 0; i < 50; i++) budget.deposit(0)
    let granted = 0
    while (budget.tryWithdraw(0)) granted++
    assert.equal(granted, 10)
  })
  it('grants the floor of min_per_second × ttl with no traffic', () => {
    const budget = new RetryBudget(0.2, 1, 10_000, 0)
    let granted = 0
    while (budget.tryWithdraw(0) && granted < 100) granted++
    assert.equal(granted, 10)
  })
  it('forgets requests and retries older than the ttl', () => {
    const budget = new RetryBudget(0.5, 0, 10_000, 0)
    for (let i = 0; i < 10; i++) budget.deposit(0)
    assert.ok(budget.tryWithdraw(0))
    assert.equal(budget.tryWithdraw(11_000), false, 'the deposits expired')
    for (let i = 0; i < 2; i++) budget.deposit(11_000)
    assert.ok(budget.tryWithdraw(11_500))
    assert.equal(budget.tryWithdraw(11_500), false)
  })
})
