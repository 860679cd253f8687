// The re-supervision dashboard's logic: periods as the API takes them (days of Asia/Shanghai),
// the department ranking, the figures as text, and the overdue tasks grouped by department.
// Formulas and parameters: portal/src/routes/dept_metrics.rs.

import { formatTime } from './time'
import { query } from './api'

/** One department's figures (`GET /api/v1/metrics/departments`); a rate or mean is null without a denominator. */
export interface DepartmentFigures {
  department_id: number
  department_code: string
  department_name: string
  tasks: number
  received: number
  returns: number
  return_rate: number | null
  signed: number
  signed_on_time: number
  on_time_sign_rate: number | null
  closed: number
  closed_on_time: number
  on_time_completion_rate: number | null
  sign_overdue: number
  handle_overdue: number
  open_overdue_now: number
  mean_sign_minutes: number | null
  mean_close_minutes: number | null
  reviewed: number
  redone: number
  redo_rate: number | null
  extended: number
  extension_rate: number | null
  warnings_received: number
  warnings_false_positive: number
  false_positive_rate: number | null
  callbacks: number
  callbacks_satisfied: number
  callback_satisfaction: number | null
}

export interface Figures {
  items: DepartmentFigures[]
  from: string
  to: string
  as_of: string
}

/** A period as the API takes it: the first and the last day held, both `YYYY-MM-DD` of Asia/Shanghai. */
export interface Period {
  from: string
  to: string
}

export const PRESETS = ['last7', 'last30', 'thisMonth', 'lastMonth', 'thisQuarter', 'thisYear'] as const
export type Preset = (typeof PRESETS)[number]

/** Today's date in Asia/Shanghai. */
export function shanghaiDay(now: number | Date): string {
  return formatTime(now).slice(0, 10)
}

function parseDay(day: string): Date {
  return new Date(`${day}T00:00:00Z`)
}

function dayString(d: Date): string {
  return d.toISOString().slice(0, 10)
}

/** `day` moved by `n` days (calendar arithmetic on the date alone). */
export function addDays(day: string, n: number): string {
  const d = parseDay(day)
  d.setUTCDate(d.getUTCDate() + n)
  return dayString(d)
}

/** The first day of the month `n` months from the month of `day`. */
export function monthStart(day: string, n = 0): string {
  const d = parseDay(day)
  return dayString(new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + n, 1)))
}

/** The period a preset names, judged at `now`; periods that reach today end today. */
export function presetPeriod(preset: Preset, now: number | Date): Period {
  const today = shanghaiDay(now)
  switch (preset) {
    case 'last7':
      return { from: addDays(today, -6), to: today }
    case 'last30':
      return { from: addDays(today, -29), to: today }
    case 'thisMonth':
      return { from: monthStart(today), to: today }
    case 'lastMonth':
      return { from: monthStart(today, -1), to: addDays(monthStart(today), -1) }
    case 'thisQuarter': {
      const m = parseDay(today).getUTCMonth()
      return { from: monthStart(today, -(m % 3)), to: today }
    }
    case 'thisYear':
      return { from: `${today.slice(0, 4)}-01-01`, to: today }
  }
}

/** Whether a period can be asked for: two days, the first not after the last. */
export function validPeriod(p: Period | null | undefined): p is Period {
  const day = /^\d{4}-\d{2}-\d{2}$/
  return !!p && day.test(p.from) && day.test(p.to) && !Number.isNaN(parseDay(p.from).getTime()) && p.from <= p.to
}

/** The query string of the figures and of their export. */
export function periodQuery(p: Period): string {
  return query({ from: p.from, to: p.to })
}

export const FIGURES_PATH = '/api/v1/metrics/departments'
export const exportPath = (p: Period) => `${FIGURES_PATH}/export${periodQuery(p)}`

/** The last `n` whole months before the one `now` is in, then that month up to today, oldest first. */
export function trendMonths(now: number | Date, n: number): (Period & { label: string })[] {
  const today = shanghaiDay(now)
  const out: (Period & { label: string })[] = []
  for (let i = n; i >= 0; i--) {
    const from = monthStart(today, -i)
    const to = i === 0 ? today : addDays(monthStart(today, -i + 1), -1)
    out.push({ from, to, label: from.slice(0, 7) })
  }
  return out
}

export type RateKey = 'on_time_sign_rate' | 'on_time_completion_rate' | 'return_rate' | 'redo_rate' | 'extension_rate' | 'false_positive_rate' | 'callback_satisfaction'
export type SortKey = Exclude<keyof DepartmentFigures, 'department_id' | 'department_code'>
export type SortOrder = 'ascending' | 'descending' | null

/** Rates over every department together (the sum of parts over the sum of wholes); null without a whole. */
export function overallRate(items: readonly DepartmentFigures[], part: keyof DepartmentFigures, whole: keyof DepartmentFigures): number | null {
  let p = 0
  let w = 0
  for (const i of items) {
    p += Number(i[part]) || 0
    w += Number(i[whole]) || 0
  }
  return w > 0 ? p / w : null
}

function compareValues(a: unknown, b: unknown): number {
  if (typeof a === 'string' && typeof b === 'string') return a.localeCompare(b, 'zh-CN')
  return Number(a) - Number(b)
}

/**
 * The default ranking: on-time completion rate, then on-time sign-for rate, then fewer open
 * overdue tasks, then more tasks; departments without a figure come after those with one.
 * A chosen column orders by that column instead; missing figures always come last, either way.
 */
export function rankFigures(items: readonly DepartmentFigures[], key: SortKey | null = null, order: SortOrder = null): DepartmentFigures[] {
  const out = [...items]
  const nullsLast = (a: unknown, b: unknown, dir: number) => {
    if (a === null && b === null) return 0
    if (a === null) return 1
    if (b === null) return -1
    return dir * compareValues(a, b)
  }
  if (key && order) {
    const dir = order === 'ascending' ? 1 : -1
    return out.sort((x, y) => nullsLast(x[key], y[key], dir) || x.department_code.localeCompare(y.department_code))
  }
  return out.sort(
    (x, y) =>
      nullsLast(x.on_time_completion_rate, y.on_time_completion_rate, -1) ||
      nullsLast(x.on_time_sign_rate, y.on_time_sign_rate, -1) ||
      x.open_overdue_now - y.open_overdue_now ||
      y.tasks - x.tasks ||
      x.department_code.localeCompare(y.department_code),
  )
}


/** `1天2小时5分` / `1d 2h 5m` from minutes; `—` without a figure. */
export function formatMinutes(m: number | null | undefined, locale: string): string {
  if (m === null || m === undefined || Number.isNaN(m)) return '—'
  const total = Math.round(m)
  const d = Math.floor(total / 1440)
  const h = Math.floor((total % 1440) / 60)
  const min = total % 60
  if (locale === 'en') return [d ? `${d}d` : '', d || h ? `${h}h` : '', `${min}m`].filter(Boolean).join(' ')
  return `${d ? `${d}天` : ''}${d || h ? `${h}小时` : ''}${min}分`
}

/** A rate as a chart value: percent with one decimal, or null (no bar) without a figure. */
export function percentValue(r: number | null): number | null {
  return r === null ? null : Math.round(r * 1000) / 10
}

/** The departments a per-department rate chart shows (those with a figure), best first. */
export function rateChart(items: readonly DepartmentFigures[], key: RateKey): { names: string[]; values: number[] } {
  const rows = items
    .filter((i) => i[key] !== null)
    .sort((a, b) => (b[key] as number) - (a[key] as number) || a.department_code.localeCompare(b.department_code))
  return { names: rows.map((r) => r.department_name), values: rows.map((r) => percentValue(r[key]) as number) }
}

/** An overdue task as the task list gives it (the fields the dashboard shows). */
export interface OverdueTask {
  id: number
  task_no: string
  title: string
  level: number
  state: string
  department_id: number
  department_name: string
  due: string | null
}

export interface OverdueGroup {
  department_id: number
  department_name: string
  tasks: OverdueTask[]
}

/** Overdue tasks by department, most overdue tasks first; within one, the longest overdue first. */
export function groupOverdue(tasks: readonly OverdueTask[]): OverdueGroup[] {
  const by = new Map<number, OverdueGroup>()
  for (const t of tasks) {
    let g = by.get(t.department_id)
    if (!g) {
      g = { department_id: t.department_id, department_name: t.department_name, tasks: [] }
      by.set(t.department_id, g)
    }
    g.tasks.push(t)
  }
  const dueOf = (t: OverdueTask) => (t.due ? new Date(t.due).getTime() : Number.POSITIVE_INFINITY)
  for (const g of by.values()) g.tasks.sort((a, b) => dueOf(a) - dueOf(b) || a.id - b.id)
  return [...by.values()].sort((a, b) => b.tasks.length - a.tasks.length || a.department_name.localeCompare(b.department_name, 'zh-CN'))
}

/** The overdue task list's request: open tasks past due, at most `limit`, optionally of one department. */
export function overduePath(limit: number, departmentId?: number | null): string {
  return `/api/v1/tasks${query({ overdue: true, department_id: departmentId ?? null, limit })}`
}
