import { describe, expect, it } from 'vitest'
import { detectorOf, dispatchBody, evidenceChart, parseTaskId, scoreThreshold, toMillis } from './evidence'

describe('evidence chart', () => {
  it('keeps the rule limits that are numbers, and a model score threshold apart', () => {
    expect(evidenceChart({ limits: { above: 150 } }).limits).toEqual([{ kind: 'above', value: 150 }])
    expect(evidenceChart({ limits: { above: 'x', below: -3.5 } }).limits).toEqual([{ kind: 'below', value: -3.5 }])
    expect(evidenceChart({}).limits).toEqual([])
    expect(scoreThreshold({ limits: { score_at_least: 0.8 } })).toBe(0.8)
    expect(scoreThreshold({ limits: { above: 1 } })).toBeNull()
  })

  it('turns [time, value] pairs into sorted points and keeps the event time', () => {
    const c = evidenceChart({
      detector: 'threshold',
      at: '2026-05-01T08:02:00Z',
      series: [
        ['2026-05-01T08:02:00Z', 9.5],
        ['2026-05-01T08:00:00Z', 1],
        ['2026-05-01T08:01:00Z', '2.5'],
      ],
    })
    const t0 = Date.parse('2026-05-01T08:00:00Z')
    expect(c.points).toEqual([
      [t0, 1],
      [t0 + 60_000, 2.5],
      [t0 + 120_000, 9.5],
    ])
    expect(c.eventAt).toBe(t0 + 120_000)
  })

  it('drops what is not a time and a number', () => {
    const c = evidenceChart({ series: [['nope', 1], ['2026-05-01T08:00:00Z', null], [1, 2, 3], 'x', ['2026-05-01T08:00:00Z', Infinity]] })
    expect(c.points).toEqual([[1000, 2]])
    expect(c.eventAt).toBeNull()
  })

  it('copes with evidence that has no series', () => {
    expect(evidenceChart({ detector: 'health', version: '1' }).points).toEqual([])
    expect(evidenceChart(null)).toEqual({ points: [], eventAt: null, limits: [] })
  })

  it('reads seconds and milliseconds', () => {
    expect(toMillis(1_700_000_000)).toBe(1_700_000_000_000)
    expect(toMillis(1_700_000_000_000)).toBe(1_700_000_000_000)
    expect(toMillis('')).toBeNull()
  })
})

describe('detector', () => {
  const w = { source: 'rule', source_version: '3' }
  it('prefers the evidence', () => {
    expect(detectorOf({ detector: 'zscore', version: '7' }, w)).toEqual({ name: 'zscore', version: '7' })
  })
  it('falls back to the warning', () => {
    expect(detectorOf({}, w)).toEqual({ name: 'rule', version: '3' })
  })
})

describe('dispatch body', () => {
  it('leaves the department to the server when none is picked', () => {
    expect(dispatchBody(null, [])).toEqual({ co_department_ids: [] })
  })
  it('drops the lead and duplicates from the co-handlers', () => {
    expect(dispatchBody(2, [3, 2, 3, 5])).toEqual({ department_id: 2, co_department_ids: [3, 5] })
  })
})

describe('task ids', () => {
  it('accepts positive whole numbers only', () => {
    expect(parseTaskId(' 42 ')).toBe(42)
    for (const bad of ['', '0', '-1', '4.2', '1e3', 'abc', '99999999999999999']) expect(parseTaskId(bad)).toBeNull()
  })
})
