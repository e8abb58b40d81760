// scripts/soak-report.ts: what `npm run soak` makes of its samples (the run itself is not in CI).
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { growth, growthWindowS, niceStep, soakChartSvg, soakCsv, soakSamplesFromCsv, type SoakSample } from '../../scripts/soak-report.ts'

function sample(elapsedS: number, overrides: Partial<SoakSample> = {}): SoakSample {
  return { elapsedS, rssMb: 60, heapUsedMb: 8, heapTotalMb: 12, fds: 70, rps: 300, p50Ms: 1.5, p99Ms: 9, errors: 0, skipped: 0, cpuPercent: 15, load1: 1, ...overrides }
}

/** A 30-minute run sampled every 5 s, RSS rising by `mbPerHour` from 60 MB. */
function run(mbPerHour: number, overrides: (elapsedS: number) => Partial<SoakSample> = () => ({})): SoakSample[] {
  return Array.from({ length: 360 }, (_, i) => {
    const elapsedS = (i + 1) * 5
    return sample(elapsedS, { rssMb: 60 + (mbPerHour * elapsedS) / 3600, ...overrides(elapsedS) })
  })
}

describe('soak growth', () => {
  test('the first 2 minutes against the last 2, per hour: a steady rise is measured at its rate', () => {
    const rss = growth(run(12), 'rssMb', 120)
    assert.ok(Math.abs(rss.perHour - 12) < 1e-9, `${rss.perHour}`)
    assert.ok(Math.abs(rss.first - (60 + (12 * 62.5) / 3600)) < 1e-9, `${rss.first}`) // mean of 5 s … 120 s
    assert.ok(Math.abs(rss.last - (60 + (12 * 1742.5) / 3600)) < 1e-9, `${rss.last}`) // mean of 1685 s … 1800 s
  })

  test('flat is zero, a fall is negative, and what happens between the windows does not count', () => {
    assert.equal(growth(run(0), 'rssMb', 120).perHour, 0)
    assert.ok(growth(run(-30), 'rssMb', 120).perHour < 0)
    const spikeInTheMiddle = run(0, (s) => (s > 600 && s < 1200 ? { fds: 5000 } : {}))
    assert.equal(growth(spikeInTheMiddle, 'fds', 120).perHour, 0)
  })

  test('a value never measured (a runtime without heap figures) gives NaN, not zero', () => {
    const heapless = run(10, () => ({ heapUsedMb: NaN }))
    assert.ok(Number.isNaN(growth(heapless, 'heapUsedMb', 120).perHour))
    assert.ok(Number.isNaN(growth([], 'rssMb', 120).perHour))
  })

  test('windows are 2 minutes, or a quarter of a shorter run so they never overlap', () => {
    assert.equal(growthWindowS(1800), 120)
    assert.equal(growthWindowS(60), 15)
  })
})

describe('soak CSV', () => {
  test('a header, then one line a sample with fixed digits; a value not measured is an empty field', () => {
    const csv = soakCsv([sample(5), sample(10, { rssMb: 61.234, heapUsedMb: NaN, p99Ms: 12.3456 })])
    assert.equal(
      csv,
      [
        'elapsed_s,rss_mb,heap_used_mb,heap_total_mb,fds,rps,p50_ms,p99_ms,errors,skipped,cpu_percent,load1',
        '5.0,60.00,8.00,12.00,70,300.0,1.500,9.000,0,0,15.0,1.00',
        '10.0,61.23,,12.00,70,300.0,1.500,12.346,0,0,15.0,1.00',
        '',
      ].join('\n'),
    )
  })

  test('reads back what it wrote, to the digits written; an empty field is NaN again', () => {
    const written = [sample(5, { rssMb: 61.25, heapUsedMb: NaN }), sample(10)]
    assert.deepEqual(soakSamplesFromCsv(soakCsv(written)), written)
  })
})

describe('soak chart', () => {
  test('one line a measured series, the ones not measured named in the legend, the title escaped', () => {
    const svg = soakChartSvg(run(12, () => ({ heapUsedMb: NaN, heapTotalMb: NaN })), 'soak <binary> & co')
    assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg" width="1000" height="\d+"/)
    assert.equal(svg.match(/<polyline /g)?.length, 5) // RSS, fds, rps, p99, p50
    assert.match(svg, /JS heap used \(not measured\)/)
    assert.match(svg, /soak &lt;binary&gt; &amp; co/)
    assert.match(svg, />30 min</)
  })

  test('axis steps are 1, 2 or 5 times a power of ten', () => {
    assert.deepEqual([niceStep(30, 10), niceStep(0.5, 10), niceStep(77, 4), niceStep(0, 4)], [5, 0.05, 20, 1])
  })
})
