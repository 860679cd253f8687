// The working calendar (store/src/calendar.rs): Monday to Friday are working days unless a day is
// set as a holiday (法定节假日); Saturday and Sunday are days off unless set as a make-up working
// day (调休上班). Dates here are plain calendar dates (`YYYY-MM-DD`), with no time zone: computed in
// UTC so the browser's zone cannot shift a day.

export type DayKind = 'holiday' | 'workday'

export interface CalendarDay {
  day: string
  kind: DayKind
  name: string | null
}

export interface DayCell {
  /** `YYYY-MM-DD` */
  date: string
  /** Day of the month. */
  day: number
  /** False for the days of the previous and next month that fill the first and last week. */
  inMonth: boolean
  weekend: boolean
}

const pad = (n: number) => String(n).padStart(2, '0')

export function dateKey(year: number, month: number, day: number): string {
  return `${year}-${pad(month)}-${pad(day)}`
}

/** The weeks (Monday first) covering a month (`month` 1..12), with the neighbouring days that complete them. */
export function monthGrid(year: number, month: number): DayCell[][] {
  const first = Date.UTC(year, month - 1, 1)
  const offset = (new Date(first).getUTCDay() + 6) % 7 // days since Monday
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate()
  const weeks = Math.ceil((offset + daysInMonth) / 7)
  const out: DayCell[][] = []
  for (let w = 0; w < weeks; w++) {
    const week: DayCell[] = []
    for (let i = 0; i < 7; i++) {
      const d = new Date(first + (w * 7 + i - offset) * 86400_000)
      week.push({
        date: dateKey(d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate()),
        day: d.getUTCDate(),
        inMonth: d.getUTCMonth() === month - 1,
        weekend: i >= 5,
      })
    }
    out.push(week)
  }
  return out
}

/** What a day is: a set holiday or make-up working day, else a weekend day or an ordinary working day. */
export type DayStatus = 'holiday' | 'workday' | 'weekend' | 'working'

export function dayStatus(cell: Pick<DayCell, 'date' | 'weekend'>, set: ReadonlyMap<string, CalendarDay>): DayStatus {
  const s = set.get(cell.date)
  if (s) return s.kind
  return cell.weekend ? 'weekend' : 'working'
}

export function isWorkingDay(status: DayStatus): boolean {
  return status === 'working' || status === 'workday'
}

export function calendarIndex(items: readonly CalendarDay[]): Map<string, CalendarDay> {
  return new Map(items.map((d) => [d.day, d]))
}

/** Working days in a month under the calendar. */
export function workingDaysIn(year: number, month: number, set: ReadonlyMap<string, CalendarDay>): number {
  return monthGrid(year, month)
    .flat()
    .filter((c) => c.inMonth && isWorkingDay(dayStatus(c, set))).length
}

/** Today's date in Asia/Shanghai, as `{year, month}` (the calendar opens on it). */
export function shanghaiMonth(now: Date): { year: number; month: number } {
  const p = new Intl.DateTimeFormat('en-CA', { timeZone: 'Asia/Shanghai', year: 'numeric', month: '2-digit' }).formatToParts(now)
  const get = (t: string) => Number(p.find((x) => x.type === t)?.value)
  return { year: get('year'), month: get('month') }
}
