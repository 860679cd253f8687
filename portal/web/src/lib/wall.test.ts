import { describe, expect, it } from 'vitest'
import { applyChange, hourlyCounts, onlineRate } from './wall'

describe('hourly counts', () => {
  const now = Date.parse('2026-05-01T10:20:00Z') // 18:20 in Shanghai
  it('has 24 Shanghai hours ending with the current one', () => {
    const { labels } = hourlyCounts([], now)
    expect(labels).toHaveLength(24)
    expect(labels[23]).toBe('05-01 18:00')
    expect(labels[0]).toBe('04-30 19:00')
  })
  it('counts each time in its hour and drops older ones', () => {
    const { counts } = hourlyCounts(
      ['2026-05-01T10:00:00Z', '2026-05-01T10:19:59Z', '2026-05-01T09:59:59Z', '2026-04-30T11:00:00Z', '2026-04-30T10:59:59Z'],
      now,
    )
    expect(counts[23]).toBe(2)
    expect(counts[22]).toBe(1)
    expect(counts[0]).toBe(1)
    expect(counts.reduce((a, b) => a + b, 0)).toBe(4)
  })
})

describe('live list', () => {
  const w = (id: number, open = true) => ({ id, level: 1, open, first_seen: '', last_seen: '' })
  it('puts new and repeated warnings first and drops resolved ones', () => {
    let list = applyChange([], 'opened', w(1))
    list = applyChange(list, 'opened', w(2))
    expect(list.map((x) => x.id)).toEqual([2, 1])
    list = applyChange(list, 'repeated', w(1))
    expect(list.map((x) => x.id)).toEqual([1, 2])
    list = applyChange(list, 'resolved', w(2, false))
    expect(list.map((x) => x.id)).toEqual([1])
  })
  it('keeps at most max entries', () => {
    const list = [1, 2, 3].reduce((l, i) => applyChange(l, 'opened', w(i), 2), [] as ReturnType<typeof w>[])
    expect(list.map((x) => x.id)).toEqual([3, 2])
  })
})

describe('online rate', () => {
  it('is a percentage with at most one decimal', () => {
    expect(onlineRate(7, 8)).toBe('87.5%')
    expect(onlineRate(60, 60)).toBe('100%')
    expect(onlineRate(1, 3)).toBe('33.3%')
    expect(onlineRate(0, 5)).toBe('0%')
  })
  it('is a dash when there are no devices', () => {
    expect(onlineRate(0, 0)).toBe('—')
  })
})
