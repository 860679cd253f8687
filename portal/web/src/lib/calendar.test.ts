import { describe, expect, it } from 'vitest'
import { calendarIndex, dayStatus, monthGrid, shanghaiMonth, workingDaysIn, type CalendarDay } from './calendar'

describe('month grid', () => {
  it('covers a month in weeks starting on Monday', () => {
    // May 2026 starts on a Friday and has 31 days: 5 weeks, from Mon 27 April to Sun 31 May.
    const g = monthGrid(2026, 5)
    expect(g).toHaveLength(5)
    expect(g[0][0]).toEqual({ date: '2026-04-27', day: 27, inMonth: false, weekend: false })
    expect(g[0][4]).toEqual({ date: '2026-05-01', day: 1, inMonth: true, weekend: false })
    expect(g[0][5].weekend && g[0][6].weekend).toBe(true)
    expect(g[4][6]).toEqual({ date: '2026-05-31', day: 31, inMonth: true, weekend: true })
    expect(g.flat().filter((c) => c.inMonth)).toHaveLength(31)
  })

  it('handles February of leap years and a month starting on Monday', () => {
    expect(monthGrid(2028, 2).flat().filter((c) => c.inMonth)).toHaveLength(29)
    const june = monthGrid(2026, 6) // 1 June 2026 is a Monday
    expect(june[0][0].date).toBe('2026-06-01')
    const dec = monthGrid(2026, 12)
    expect(dec[dec.length - 1].some((c) => c.date === '2027-01-03')).toBe(true)
  })
})

describe('day status', () => {
  const set = calendarIndex([
    { day: '2026-05-01', kind: 'holiday', name: '劳动节' },
    { day: '2026-05-09', kind: 'workday', name: '劳动节调休' },
  ] satisfies CalendarDay[])

  it('puts set days over the weekday rule', () => {
    expect(dayStatus({ date: '2026-05-01', weekend: false }, set)).toBe('holiday')
    expect(dayStatus({ date: '2026-05-09', weekend: true }, set)).toBe('workday')
    expect(dayStatus({ date: '2026-05-10', weekend: true }, set)).toBe('weekend')
    expect(dayStatus({ date: '2026-05-11', weekend: false }, set)).toBe('working')
  })

  it('counts working days in a month', () => {
    // 21 weekdays in May 2026, less the holiday, plus the make-up Saturday.
    expect(workingDaysIn(2026, 5, new Map())).toBe(21)
    expect(workingDaysIn(2026, 5, set)).toBe(21)
    expect(workingDaysIn(2026, 5, calendarIndex([{ day: '2026-05-04', kind: 'holiday', name: null }]))).toBe(20)
  })
})

describe('Shanghai month', () => {
  it('is the month in China, not in the browser zone', () => {
    // 16:30 UTC on 31 May is already 1 June in Shanghai.
    expect(shanghaiMonth(new Date('2026-05-31T16:30:00Z'))).toEqual({ year: 2026, month: 6 })
    expect(shanghaiMonth(new Date('2026-05-31T15:59:00Z'))).toEqual({ year: 2026, month: 5 })
  })
})
