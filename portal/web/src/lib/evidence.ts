// A warning's evidence (analytics/src/live.rs) made into what the detail page draws and sends.

/** The evidence object as stored; every field may be missing (health warnings carry no series). */
export interface Evidence {
  detector?: string
  version?: string
  score?: number
  value?: number
  at?: string | number
  series?: unknown
  /** What the value was measured against (analytics `Limits`): drawn as lines on the chart. */
  limits?: { above?: unknown; below?: unknown; score_at_least?: unknown }
}

/** Milliseconds since the epoch from an RFC 3339 string or a number (seconds below 1e11, else ms). */
export function toMillis(t: unknown): number | null {
  if (typeof t === 'number') {
    if (!Number.isFinite(t)) return null
    return Math.abs(t) < 1e11 ? t * 1000 : t
  }
  if (typeof t === 'string' && t !== '') {
    const ms = Date.parse(t)
    return Number.isNaN(ms) ? null : ms
  }
  return null
}

export interface EvidenceChart {
  /** `[ms, value]` in time order; pairs that are not a time and a finite number are dropped. */
  points: [number, number][]
  /** When the event happened, for the marker; `null` when the evidence does not say. */
  eventAt: number | null
  /** Value limits of the rule that raised it (a threshold's `above` / `below`), finite numbers only. */
  limits: { kind: 'above' | 'below'; value: number }[]
}

export function evidenceChart(evidence: unknown): EvidenceChart {
  const ev = (evidence && typeof evidence === 'object' ? evidence : {}) as Evidence
  const points: [number, number][] = []
  if (Array.isArray(ev.series)) {
    for (const pair of ev.series) {
      if (!Array.isArray(pair) || pair.length < 2) continue
      const at = toMillis(pair[0])
      const v = typeof pair[1] === 'number' ? pair[1] : typeof pair[1] === 'string' ? Number(pair[1]) : NaN
      if (at === null || !Number.isFinite(v)) continue
      points.push([at, v])
    }
  }
  points.sort((a, b) => a[0] - b[0])
  const limits: EvidenceChart['limits'] = []
  const l = ev.limits && typeof ev.limits === 'object' ? ev.limits : {}
  for (const kind of ['above', 'below'] as const) {
    const v = l[kind]
    if (typeof v === 'number' && Number.isFinite(v)) limits.push({ kind, value: v })
  }
  return { points, eventAt: toMillis(ev.at), limits }
}

/** A model's raise threshold on its score, when the evidence carries one. */
export function scoreThreshold(evidence: unknown): number | null {
  const ev = (evidence && typeof evidence === 'object' ? evidence : {}) as Evidence
  const v = ev.limits && typeof ev.limits === 'object' ? ev.limits.score_at_least : undefined
  return typeof v === 'number' && Number.isFinite(v) ? v : null
}

/** The rule or model that raised it and its version: the evidence's, else the warning's own. */
export function detectorOf(
  evidence: unknown,
  warning: { source: string; source_version: string },
): { name: string; version: string } {
  const ev = (evidence && typeof evidence === 'object' ? evidence : {}) as Evidence
  const name = typeof ev.detector === 'string' && ev.detector ? ev.detector : warning.source
  const version = typeof ev.version === 'string' && ev.version ? ev.version : warning.source_version
  return { name, version }
}

/**
 * The dispatch body: no department means "the responsible one" (the server picks); co-handling
 * departments without duplicates and without the lead one.
 */
export function dispatchBody(
  departmentId: number | null | undefined,
  coDepartmentIds: readonly number[],
): { department_id?: number; co_department_ids: number[] } {
  const lead = departmentId ?? undefined
  const co = [...new Set(coDepartmentIds)].filter((d) => d !== lead)
  return lead === undefined ? { co_department_ids: co } : { department_id: lead, co_department_ids: co }
}

/** A task id as typed: a positive whole number, else `null`. */
export function parseTaskId(input: string): number | null {
  const s = input.trim()
  if (!/^[1-9][0-9]{0,17}$/.test(s)) return null
  const n = Number(s)
  return Number.isSafeInteger(n) ? n : null
}
