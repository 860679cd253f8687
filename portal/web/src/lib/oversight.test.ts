import { describe, expect, it } from 'vitest'
import { formatPercent } from './format'
import {
  addDays,
  exportPath,
  formatMinutes,
  groupOverdue,
  monthStart,
  overallRate,
  overduePath,
  presetPeriod,
  rankFigures,
  rateChart,
  trendMonths,
  validPeriod,
  type DepartmentFigures,
  type OverdueTask,
} from './oversight'

// 2026-03-31 17:30 UTC is already 1 April in Shanghai.
const NOW = Date.parse('2026-03-31T17:30:00Z')

function dept(code: string, over: Partial<DepartmentFigures> = {}): DepartmentFigures {
  return {
    department_id: code.charCodeAt(0),
    department_code: code,
    department_name: `部门${code}`,
    tasks: 0,
    received: 0,
    returns: 0,
    return_rate: null,
    signed: 0,
    signed_on_time: 0,
    on_time_sign_rate: null,
    closed: 0,
    closed_on_time: 0,
    on_time_completion_rate: null,
    sign_overdue: 0,
    handle_overdue: 0,
    open_overdue_now: 0,
    mean_sign_minutes: null,
    mean_close_minutes: null,
    reviewed: 0,
    redone: 0,
    redo_rate: null,
    extended: 0,
    extension_rate: null,
    warnings_received: 0,
    warnings_false_positive: 0,
    false_positive_rate: null,
    callbacks: 0,
    callbacks_satisfied: 0,
    callback_satisfaction: null,
    ...over,
  }
}

describe('periods', () => {
  it('are days of Asia/Shanghai, whatever the browser zone', () => {
    expect(presetPeriod('last7', NOW)).toEqual({ from: '2026-03-26', to: '2026-04-01' })
    expect(presetPeriod('last30', NOW)).toEqual({ from: '2026-03-03', to: '2026-04-01' })
    expect(presetPeriod('thisMonth', NOW)).toEqual({ from: '2026-04-01', to: '2026-04-01' })
    expect(presetPeriod('lastMonth', NOW)).toEqual({ from: '2026-03-01', to: '2026-03-31' })
    expect(presetPeriod('thisQuarter', NOW)).toEqual({ from: '2026-04-01', to: '2026-04-01' })
    expect(presetPeriod('thisYear', NOW)).toEqual({ from: '2026-01-01', to: '2026-04-01' })
  })

  it('cross months, years and leap days', () => {
    expect(addDays('2024-02-28', 1)).toBe('2024-02-29')
    expect(addDays('2026-01-01', -1)).toBe('2025-12-31')
    expect(monthStart('2026-01-15', -1)).toBe('2025-12-01')
    expect(presetPeriod('thisQuarter', Date.parse('2026-08-20T04:00:00Z'))).toEqual({ from: '2026-07-01', to: '2026-08-20' })
    expect(presetPeriod('lastMonth', Date.parse('2026-01-10T04:00:00Z'))).toEqual({ from: '2025-12-01', to: '2025-12-31' })
  })

  it('are checked before they are asked for', () => {
    expect(validPeriod({ from: '2026-03-01', to: '2026-03-01' })).toBe(true)
    expect(validPeriod({ from: '2026-03-02', to: '2026-03-01' })).toBe(false)
    expect(validPeriod({ from: '2026-3-1', to: '2026-03-09' })).toBe(false)
    expect(validPeriod(null)).toBe(false)
  })

  it('make the export address with the same parameters', () => {
    expect(exportPath({ from: '2026-03-01', to: '2026-03-31' })).toBe('/api/v1/metrics/departments/export?from=2026-03-01&to=2026-03-31')
  })

  it('make a trend of whole months ending with the current one', () => {
    const months = trendMonths(NOW, 2)
    expect(months).toEqual([
      { from: '2026-02-01', to: '2026-02-28', label: '2026-02' },
      { from: '2026-03-01', to: '2026-03-31', label: '2026-03' },
      { from: '2026-04-01', to: '2026-04-01', label: '2026-04' },
    ])
  })
})

describe('ranking', () => {
  const items = [
    dept('a', { on_time_completion_rate: 0.5, tasks: 4 }),
    dept('b', { on_time_completion_rate: null, tasks: 0 }),
    dept('c', { on_time_completion_rate: 1, on_time_sign_rate: 0.5 }),
    dept('d', { on_time_completion_rate: 1, on_time_sign_rate: 0.9 }),
    dept('e', { on_time_completion_rate: 0.5, tasks: 9 }),
  ]

  it('puts the best completion, then sign-for, first and the idle last', () => {
    expect(rankFigures(items).map((i) => i.department_code)).toEqual(['d', 'c', 'e', 'a', 'b'])
  })

  it('orders by a chosen column with missing figures last either way', () => {
    const asc = rankFigures(items, 'on_time_sign_rate', 'ascending').map((i) => i.department_code)
    const desc = rankFigures(items, 'on_time_sign_rate', 'descending').map((i) => i.department_code)
    expect(asc).toEqual(['c', 'd', 'a', 'b', 'e'])
    expect(desc).toEqual(['d', 'c', 'a', 'b', 'e'])
    expect(rankFigures(items, 'department_name', 'descending')[0].department_code).toBe('e')
  })

  it('never changes the list it was given', () => {
    const before = items.map((i) => i.department_code)
    rankFigures(items)
    expect(items.map((i) => i.department_code)).toEqual(before)
  })
})

describe('figures as text and charts', () => {
  it('shows rates as percentages and minutes as durations', () => {
    expect(formatPercent(0.875)).toBe('87.5%')
    expect(formatPercent(1)).toBe('100.0%')
    expect(formatPercent(0)).toBe('0.0%')
    expect(formatPercent(null)).toBe('—')
    expect(formatMinutes(1565, 'zh-CN')).toBe('1天2小时5分')
    expect(formatMinutes(1565, 'en')).toBe('1d 2h 5m')
    expect(formatMinutes(42.4, 'zh-CN')).toBe('42分')
    expect(formatMinutes(120, 'en')).toBe('2h 0m')
    expect(formatMinutes(null, 'en')).toBe('—')
  })

  it('adds parts and wholes over departments for the overall rate', () => {
    const items = [dept('a', { closed: 3, closed_on_time: 3 }), dept('b', { closed: 1, closed_on_time: 0 }), dept('c')]
    expect(overallRate(items, 'closed_on_time', 'closed')).toBe(0.75)
    expect(overallRate([dept('z')], 'closed_on_time', 'closed')).toBeNull()
  })

  it('charts the departments with a figure, best first', () => {
    const c = rateChart(
      [dept('a', { on_time_completion_rate: 0.5 }), dept('b'), dept('c', { on_time_completion_rate: 0.8765 })],
      'on_time_completion_rate',
    )
    expect(c).toEqual({ names: ['部门c', '部门a'], values: [87.7, 50] })
  })
})

describe('overdue tasks', () => {
  const t = (id: number, dept: number, due: string | null): OverdueTask => ({
    id,
    task_no: `RW${id}`,
    title: 't',
    level: 2,
    state: 'dispatched',
    department_id: dept,
    department_name: `部门${dept}`,
    due,
  })

  it('group by department, the most overdue first, the oldest deadline first within', () => {
    const g = groupOverdue([t(1, 7, '2026-03-02T00:00:00Z'), t(2, 8, '2026-03-01T00:00:00Z'), t(3, 7, '2026-03-01T00:00:00Z')])
    expect(g.map((x) => [x.department_id, x.tasks.map((y) => y.id)])).toEqual([
      [7, [3, 1]],
      [8, [2]],
    ])
    expect(groupOverdue([])).toEqual([])
  })

  it('are asked for as open tasks past due', () => {
    expect(overduePath(200)).toBe('/api/v1/tasks?overdue=true&limit=200')
    expect(overduePath(50, 12)).toBe('/api/v1/tasks?overdue=true&department_id=12&limit=50')
  })
})
