import { describe, expect, it } from 'vitest'
import { countdownText, formatTime, hourLabel, urgency } from './time'

describe('formatTime', () => {
  it('shows UTC instants in Asia/Shanghai', () => {
    expect(formatTime('2026-05-01T00:30:00Z')).toBe('2026-05-01 08:30:00')
    // Crosses the date line into the next day in Shanghai.
    expect(formatTime('2026-12-31T16:00:05Z')).toBe('2027-01-01 00:00:05')
    expect(formatTime('2026-05-01T08:30:00+08:00', false)).toBe('2026-05-01 08:30')
  })
  it('uses a 24-hour clock at midnight', () => {
    expect(formatTime('2026-05-01T16:00:00Z')).toBe('2026-05-02 00:00:00')
  })
  it('marks missing or unreadable times', () => {
    expect(formatTime(null)).toBe('—')
    expect(formatTime('not a time')).toBe('—')
  })
  it('buckets by Shanghai hour', () => {
    expect(hourLabel('2026-05-01T23:59:59Z')).toBe('05-02 07:00')
  })
})

describe('urgency', () => {
  const now = Date.parse('2026-05-01T00:00:00Z')
  const at = (minutes: number) => new Date(now + minutes * 60_000).toISOString()
  it('colours by time left', () => {
    expect(urgency(at(-1), now)).toBe('overdue')
    expect(urgency(at(0), now)).toBe('urgent')
    expect(urgency(at(239), now)).toBe('urgent')
    expect(urgency(at(240), now)).toBe('soon')
    expect(urgency(at(24 * 60 - 1), now)).toBe('soon')
    expect(urgency(at(24 * 60), now)).toBe('ok')
    expect(urgency(null, now)).toBe('none')
  })
  it('writes the countdown in both languages', () => {
    expect(countdownText(at(26 * 60 + 5), now, 'zh-CN')).toBe('剩余 1天2小时5分')
    expect(countdownText(at(-5), now, 'zh-CN')).toBe('已超期 5分')
    expect(countdownText(at(65), now, 'en')).toBe('1h 5m left')
    expect(countdownText(undefined, now, 'en')).toBe('no deadline')
  })
})
