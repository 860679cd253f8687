import { describe, expect, it } from 'vitest'
import { describeLimit, parseLimit, writeLimit } from './limits'

describe('task time limits', () => {
  it('reads the three units the workflow knows', () => {
    expect(parseLimit('30m')).toEqual({ amount: 30, unit: 'm' })
    expect(parseLimit(' 24h ')).toEqual({ amount: 24, unit: 'h' })
    expect(parseLimit('3wd')).toEqual({ amount: 3, unit: 'wd' })
    expect(parseLimit('999999wd')).toEqual({ amount: 999999, unit: 'wd' })
  })

  it('refuses what the server refuses', () => {
    for (const bad of ['', '30', 'm', '0m', '05h', '1.5h', '-3wd', '3d', '3 wd', '1000000m', '3WD', '2h30m']) {
      expect(parseLimit(bad), bad).toBeNull()
    }
  })

  it('writes a limit back and refuses amounts that are not whole and positive', () => {
    expect(writeLimit({ amount: 3, unit: 'wd' })).toBe('3wd')
    expect(writeLimit({ amount: 45, unit: 'm' })).toBe('45m')
    expect(writeLimit({ amount: 0, unit: 'h' })).toBeNull()
    expect(writeLimit({ amount: 1.5, unit: 'h' })).toBeNull()
    expect(writeLimit({ amount: 1_000_000, unit: 'm' })).toBeNull()
    for (const s of ['30m', '24h', '3wd']) expect(writeLimit(parseLimit(s)!)).toBe(s)
  })

  it('says a limit in words in both languages', () => {
    expect(describeLimit('3wd', 'zh-CN')).toBe('3 个工作日')
    expect(describeLimit('30m', 'zh-CN')).toBe('30 分钟')
    expect(describeLimit('1h', 'en')).toBe('1 hour')
    expect(describeLimit('24h', 'en')).toBe('24 hours')
    expect(describeLimit('1wd', 'en')).toBe('1 working day')
    expect(describeLimit('soon', 'en')).toBe('soon')
  })
})
