// Task time limits as the workflow stores them (store/src/calendar.rs `Limit`): `30m` minutes and
// `24h` hours of calendar time, `3wd` working days by the working calendar. The same rules as the
// server: a whole number without leading zeros, at most 999999.

export type LimitUnit = 'm' | 'h' | 'wd'

export interface Limit {
  amount: number
  unit: LimitUnit
}

export const LIMIT_UNITS: readonly LimitUnit[] = ['m', 'h', 'wd']
export const MAX_LIMIT = 999_999

/** `30m` / ` 3wd ` -> the limit; `null` for anything the server would refuse. */
export function parseLimit(s: string): Limit | null {
  const m = /^([1-9][0-9]*)(m|h|wd)$/.exec(s.trim())
  if (!m) return null
  const amount = Number(m[1])
  if (amount > MAX_LIMIT) return null
  return { amount, unit: m[2] as LimitUnit }
}

/** The stored spelling: `{amount: 3, unit: 'wd'}` -> `3wd`; `null` when the amount is not usable. */
export function writeLimit(l: Limit): string | null {
  if (!Number.isInteger(l.amount) || l.amount < 1 || l.amount > MAX_LIMIT) return null
  return `${l.amount}${l.unit}`
}

const UNIT_ZH: Record<LimitUnit, string> = { m: '分钟', h: '小时', wd: '个工作日' }
const UNIT_EN: Record<LimitUnit, [string, string]> = {
  m: ['minute', 'minutes'],
  h: ['hour', 'hours'],
  wd: ['working day', 'working days'],
}

/** `3wd` -> `3 个工作日` (zh) / `3 working days` (en); an unreadable limit is shown as it is. */
export function describeLimit(s: string, locale: string): string {
  const l = parseLimit(s)
  if (!l) return s
  if (locale === 'en') {
    const [one, many] = UNIT_EN[l.unit]
    return `${l.amount} ${l.amount === 1 ? one : many}`
  }
  return `${l.amount} ${UNIT_ZH[l.unit]}`
}
