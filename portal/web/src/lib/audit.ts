// The audit-trail page's logic: its filters as the query of GET /api/v1/audit
// (portal/src/routes/auth.rs `audit_search`, store::AuditFilter) and how an event's details read.

import { query } from './api'

/** What the filter bar holds. Times are wall-clock `YYYY-MM-DD HH:mm:ss` in Asia/Shanghai. */
export interface AuditFilters {
  actor: string
  /** Exact (`task.sign`), or a prefix ending in `*` (`task.*`). */
  action: string
  entity: string
  entityId: string
  range: [string, string] | null
}

export const emptyAuditFilters = (): AuditFilters => ({ actor: '', action: '', entity: '', entityId: '', range: null })

/** One event as the API answers it (store::AuditRecord). */
export interface AuditRecord {
  seq: number
  at: string
  actor: string
  actor_ip: string | null
  action: string
  entity: string
  entity_id: string | null
  before: unknown
  after: unknown
  hash: string
}

const WALL_CLOCK = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?$/

/**
 * A wall-clock time as a person picks it, read as Asia/Shanghai (UTC+8 all year, no daylight
 * saving), to the UTC instant the API expects; `null` when it is not such a time.
 */
export function shanghaiToIso(wall: string): string | null {
  const m = WALL_CLOCK.exec(wall.trim())
  if (!m) return null
  const [, y, mo, d, h, mi, s] = m
  const ms = Date.UTC(+y, +mo - 1, +d, +h - 8, +mi, +(s ?? 0))
  const back = new Date(ms + 8 * 3600_000)
  // Refuses dates that do not exist (2026-02-30) instead of rolling them over.
  if (back.getUTCMonth() !== +mo - 1 || back.getUTCDate() !== +d || +h > 23 || +mi > 59 || +(s ?? 0) > 59) return null
  return new Date(ms).toISOString()
}

/** `?actor=..&action=..&since=..&until=..&limit=..&offset=..` for page `page` (from 1). */
export function auditQuery(f: AuditFilters, page: number, pageSize: number): string {
  const [from, to] = f.range ?? ['', '']
  return query({
    actor: f.actor.trim(),
    action: f.action.replace(/\s+/g, ''),
    entity: f.entity.trim(),
    entity_id: f.entityId.trim(),
    since: from ? shanghaiToIso(from) : null,
    until: to ? shanghaiToIso(to) : null,
    limit: pageSize,
    offset: Math.max(0, page - 1) * pageSize,
  })
}

/** The keys whose values differ between an event's `before` and `after`, sorted. */
export function changedKeys(before: unknown, after: unknown): string[] {
  const obj = (v: unknown): Record<string, unknown> =>
    v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {}
  const b = obj(before)
  const a = obj(after)
  const keys = new Set([...Object.keys(b), ...Object.keys(a)])
  return [...keys].filter((k) => JSON.stringify(b[k]) !== JSON.stringify(a[k])).sort()
}

/** A value of `before`/`after` for reading: indented JSON, `—` when there is none. */
export function formatDetail(v: unknown): string {
  if (v === null || v === undefined) return '—'
  return JSON.stringify(v, null, 2)
}
