// Every time a person reads is shown in China Standard Time, whatever the browser's zone: the
// platform's deadlines and working days are Asia/Shanghai ones (store/src/calendar.rs).

export const ZONE = 'Asia/Shanghai'

const parts = new Intl.DateTimeFormat('en-CA', {
  timeZone: ZONE,
  year: 'numeric',
  month: '2-digit',
  day: '2-digit',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  hourCycle: 'h23',
})

function toDate(t: string | number | Date): Date | null {
  const d = t instanceof Date ? t : new Date(t)
  return Number.isNaN(d.getTime()) ? null : d
}

/** `2026-05-01 08:30:00` in Asia/Shanghai; `—` for a missing or unreadable time. */
export function formatTime(t: string | number | Date | null | undefined, withSeconds = true): string {
  if (t === null || t === undefined || t === '') return '—'
  const d = toDate(t)
  if (!d) return '—'
  const p: Record<string, string> = {}
  for (const { type, value } of parts.formatToParts(d)) p[type] = value
  const clock = withSeconds ? `${p.hour}:${p.minute}:${p.second}` : `${p.hour}:${p.minute}`
  return `${p.year}-${p.month}-${p.day} ${clock}`
}

/** The hour bucket (`MM-DD HH:00`, Asia/Shanghai) a time falls in; the wall's per-hour chart. */
export function hourLabel(t: string | number | Date): string {
  const full = formatTime(t, false)
  return full === '—' ? full : `${full.slice(5, 13)}:00`
}

/**
 * How much time is left until a deadline, bucketed for colour: overdue (past due), urgent (under
 * four hours, the shortest sign-for limit), soon (under a day) and ok. `none` without a deadline.
 */
export type Urgency = 'none' | 'overdue' | 'urgent' | 'soon' | 'ok'

export const URGENT_MS = 4 * 3600_000
export const SOON_MS = 24 * 3600_000

export function urgency(due: string | null | undefined, now: number): Urgency {
  if (!due) return 'none'
  const d = toDate(due)
  if (!d) return 'none'
  const left = d.getTime() - now
  if (left < 0) return 'overdue'
  if (left < URGENT_MS) return 'urgent'
  if (left < SOON_MS) return 'soon'
  return 'ok'
}

/** Element Plus tag type per urgency. */
export const URGENCY_TAG: Record<Urgency, 'info' | 'danger' | 'warning' | 'success'> = {
  none: 'info',
  overdue: 'danger',
  urgent: 'danger',
  soon: 'warning',
  ok: 'success',
}

/** Whole days, hours and minutes between now and a deadline, always non-negative. */
export function splitDuration(ms: number): { days: number; hours: number; minutes: number } {
  const m = Math.floor(Math.abs(ms) / 60_000)
  return { days: Math.floor(m / 1440), hours: Math.floor((m % 1440) / 60), minutes: m % 60 }
}

/** `剩余 1天2小时3分` / `已超期 5分` (zh) or `1d 2h 3m left` / `overdue 5m` (en). */
export function countdownText(due: string | null | undefined, now: number, locale: string): string {
  if (!due) return locale === 'en' ? 'no deadline' : '无时限'
  const d = toDate(due)
  if (!d) return '—'
  const left = d.getTime() - now
  const { days, hours, minutes } = splitDuration(left)
  if (locale === 'en') {
    const s = `${days ? `${days}d ` : ''}${days || hours ? `${hours}h ` : ''}${minutes}m`
    return left < 0 ? `overdue ${s}` : `${s} left`
  }
  const s = `${days ? `${days}天` : ''}${days || hours ? `${hours}小时` : ''}${minutes}分`
  return left < 0 ? `已超期 ${s}` : `剩余 ${s}`
}
