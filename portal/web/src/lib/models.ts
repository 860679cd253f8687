// Detector models and how precise their warnings are: `GET /api/v1/models` (each load of a model
// file by the analytics tier) and `GET /api/v1/warnings/precision` (per rule and per model:
// 1 - false positives / triaged).

export interface ModelLoad {
  id: number
  detector: string
  name: string
  version: string
  sha256: string
  metadata: Record<string, unknown>
  loaded_at: string
  current: boolean
}

export interface Precision {
  source: string
  event: string
  warnings: number
  triaged: number
  false_positives: number
  precision: number | null
}

/** A source's figures summed over its events (a model raises one event; rules one per rule). */
export function precisionOf(rows: readonly Precision[], source: string): Precision | null {
  const mine = rows.filter((r) => r.source === source)
  if (mine.length === 0) return null
  const sum = (k: 'warnings' | 'triaged' | 'false_positives') => mine.reduce((n, r) => n + r[k], 0)
  const triaged = sum('triaged')
  const fp = sum('false_positives')
  return {
    source,
    event: mine.length === 1 ? mine[0].event : '*',
    warnings: sum('warnings'),
    triaged,
    false_positives: fp,
    precision: triaged > 0 ? 1 - fp / triaged : null,
  }
}

/** Each rule's figures, by rule id (rule warnings carry the event `rule:<id>`). */
export function precisionByRule(rows: readonly Precision[]): Map<number, Precision> {
  const out = new Map<number, Precision>()
  for (const r of rows) {
    const m = /^rule:(\d+)$/.exec(r.event)
    if (r.source === 'rules' && m) out.set(Number(m[1]), r)
  }
  return out
}


/** The first and last few hex digits of a digest, for a table cell. */
export function shortDigest(sha: string): string {
  return sha.length > 16 ? `${sha.slice(0, 8)}…${sha.slice(-8)}` : sha
}

/** The card's scalar facts worth a line each (window, task, runtime...), nested objects left out. */
export function cardFacts(card: Record<string, unknown>): [string, string][] {
  const skip = new Set(['name', 'version', 'sha256'])
  return Object.entries(card)
    .filter(([k, v]) => !skip.has(k) && (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean'))
    .map(([k, v]) => [k, String(v)])
}
