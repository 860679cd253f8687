import { describe, expect, it } from 'vitest'
import { formatPercent } from './format'
import { cardFacts, precisionByRule, precisionOf, shortDigest, type Precision } from './models'

const rows: Precision[] = [
  { source: 'anomaly-onnx', event: 'anomaly', warnings: 45, triaged: 8, false_positives: 2, precision: 0.75 },
  { source: 'rules', event: 'rule:1', warnings: 5, triaged: 4, false_positives: 1, precision: 0.75 },
  { source: 'rules', event: 'rule:2', warnings: 1, triaged: 0, false_positives: 0, precision: null },
  { source: 'health', event: 'offline', warnings: 3, triaged: 1, false_positives: 0, precision: 1 },
]

describe('precision', () => {
  it('is summed per source', () => {
    expect(precisionOf(rows, 'anomaly-onnx')).toEqual({ ...rows[0] })
    expect(precisionOf(rows, 'rules')).toEqual({ source: 'rules', event: '*', warnings: 6, triaged: 4, false_positives: 1, precision: 0.75 })
    expect(precisionOf(rows, 'anomaly-other')).toBeNull()
    expect(precisionOf([{ ...rows[2] }], 'rules')?.precision).toBeNull()
  })

  it('is found per rule id', () => {
    const m = precisionByRule(rows)
    expect([...m.keys()]).toEqual([1, 2])
    expect(m.get(1)?.false_positives).toBe(1)
  })

  it('is shown as a percentage', () => {
    expect(formatPercent(1)).toBe('100.0%')
    expect(formatPercent(null)).toBe('—')
  })
})

describe('model cards', () => {
  it('shorten digests and list scalar facts', () => {
    expect(shortDigest('ab6029a90de3124e660fc2da784adc91984cb775b7d62648b133ef03d37f215a')).toBe('ab6029a9…d37f215a')
    expect(shortDigest('abc')).toBe('abc')
    expect(cardFacts({ name: 'x', version: '1', window: 64, task: 'forecast', input: { name: 'x' }, sha256: 'a' })).toEqual([
      ['window', '64'],
      ['task', 'forecast'],
    ])
  })
})
