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

/** The wall's figures (GET /api/v1/wall/summary). */
export interface RegionFigures {
  region_code: string | null
  region_name: string | null
  open_by_level: [number, number, number, number]
  devices: number
  devices_online: number
}
export interface WallSummary {
  open_by_level: [number, number, number, number]
  devices: number
  devices_online: number
  regions: RegionFigures[]
  /** Cameras of the caller's devices, and how many are online. */
  cameras: { total: number; online: number }
}

/** "87.5%" (one decimal, trailing .0 dropped); "—" when there is nothing to count. */
export function onlineRate(online: number, total: number): string {
  if (total <= 0) return '—'
  const pct = Math.round((online / total) * 1000) / 10
  return `${pct}%`
}
