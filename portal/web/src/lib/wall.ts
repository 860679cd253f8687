// The wall's arithmetic, kept apart from the page so it can be tested.
import { hourLabel } from './time'

export const HOUR_MS = 3600_000

/** 24 hourly buckets ending with the current hour (Asia/Shanghai labels) and how many times fall in each. */
export function hourlyCounts(times: readonly string[], now: number): { labels: string[]; counts: number[] } {
  const currentHour = Math.floor(now / HOUR_MS) * HOUR_MS
  const first = currentHour - 23 * HOUR_MS
  const counts = new Array<number>(24).fill(0)
  for (const t of times) {
    const ms = Date.parse(t)
    if (Number.isNaN(ms) || ms < first || ms >= currentHour + HOUR_MS) continue
    counts[Math.floor((ms - first) / HOUR_MS)]++
  }
  const labels = counts.map((_, i) => hourLabel(first + i * HOUR_MS))
  return { labels, counts }
}

/**
 * Open warnings per level from the API's "at most this severe" totals: `atMost[k]` counts levels
 * 1..k+1, so level k+1 alone is the difference with the previous one.
 */
export function perLevel(atMost: readonly number[]): number[] {
  return atMost.map((n, i) => n - (i === 0 ? 0 : atMost[i - 1]))
}

export interface LiveWarning {
  id: number
  level: number
  open: boolean
  first_seen: string
  last_seen: string
}

/** Applies one stream event to the live list: newest first, resolved ones leave, at most `max` kept. */
export function applyChange<T extends LiveWarning>(list: readonly T[], kind: string, w: T, max = 50): T[] {
  const rest = list.filter((x) => x.id !== w.id)
  if (kind === 'resolved' || !w.open) return rest
  return [w, ...rest].slice(0, max)
}
