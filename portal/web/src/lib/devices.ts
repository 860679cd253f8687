// Devices: what the list filters on, how metric names read, which step a series query asks for, and
// the files a device's credentials are saved as (portal/src/routes/devices.rs, series.rs,
// device_registry.rs).

import { formatTime } from './time'

export interface Device {
  id: string
  name: string
  object_id: string | null
  online: boolean
  last_seen: string | null
  created_at: string
  revoked: boolean
  revoked_at: string | null
  rotated_at: string | null
  cert_serial: string | null
  cert_not_after: string | null
}

export interface MetricDef {
  id: number
  key: string
  name_zh: string | null
  name_en: string | null
  unit: string | null
  valid_min: number | null
  valid_max: number | null
}

export interface LatestValue {
  metric: string
  ts: string
  value: number
  quality: number
}

/**
 * What a sample's quality bits say, one i18n key under `dev.quality` per bit set (store/src/samples.rs
 * `quality`): outside the catalog's valid range, or the device's own data flag (HJ 212 F, M, S, D,
 * C, T, B), each a value that is shown but is no normal measurement.
 */
export const QUALITY_BITS = [
  [1, 'outOfRange'],
  [1 << 1, 'stopped'],
  [1 << 2, 'maintenance'],
  [1 << 3, 'manual'],
  [1 << 4, 'fault'],
  [1 << 5, 'calibration'],
  [1 << 6, 'overRange'],
  [1 << 7, 'commFault'],
] as const

export type QualityFlag = (typeof QUALITY_BITS)[number][1]

export function qualityFlags(quality: number | null | undefined): QualityFlag[] {
  const q = quality ?? 0
  return QUALITY_BITS.filter(([bit]) => (q & bit) !== 0).map(([, key]) => key)
}

/** HJ 212 equipment running states, by value (`SB<n>-RS`; store migration 0015). */
export const EQUIPMENT_STATES = ['off', 'running', 'calibrating', 'maintenance', 'alarm', 'backFlush'] as const

export type EquipmentState = (typeof EQUIPMENT_STATES)[number]

/** The running state a value of an equipment-state metric stands for; null for any other metric. */
export function equipmentState(metric: string, value: number): EquipmentState | null {
  if (!/^SB[0-9]{1,8}-RS$/.test(metric) || !Number.isInteger(value)) return null
  return EQUIPMENT_STATES[value] ?? null
}

/** A raw point has `quality`; a bucket has `min`, `max` and `count` and its value is the mean. */
export interface SeriesPoint {
  ts: string
  value: number
  quality?: number
  min?: number
  max?: number
  count?: number
}

export interface DeviceMetadata {
  location: string | null
  lon: number | null
  lat: number | null
  installed_at: string | null
  model: string | null
  metric_list: string[] | null
}

/** What `POST /api/v1/devices` and `/rotate` answer, once. */
export interface DeviceCredentials {
  device_id: string
  token: string
  cert_pem: string
  key_pem: string
  ca_pem: string
}

export type DeviceStatus = 'all' | 'online' | 'offline' | 'revoked'

export function deviceStatus(d: Device): Exclude<DeviceStatus, 'all'> {
  if (d.revoked) return 'revoked'
  return d.online ? 'online' : 'offline'
}

/** Devices whose id, name or object contains `text` (any case), in the given status. */
export function filterDevices(items: readonly Device[], text: string, status: DeviceStatus): Device[] {
  const needle = text.trim().toLowerCase()
  return items.filter((d) => {
    if (status !== 'all' && deviceStatus(d) !== status) return false
    if (!needle) return true
    return [d.id, d.name, d.object_id ?? ''].some((s) => s.toLowerCase().includes(needle))
  })
}

/** Online share of the devices not revoked, in whole percent; null without any. */
export function onlineRate(items: readonly Device[]): number | null {
  const active = items.filter((d) => !d.revoked)
  if (active.length === 0) return null
  return Math.round((100 * active.filter((d) => d.online).length) / active.length)
}

/** The metric's name in the language, else the other one, else its key. */
export function metricName(def: MetricDef | undefined, key: string, locale: string): string {
  if (!def) return key
  const [first, second] = locale === 'en' ? [def.name_en, def.name_zh] : [def.name_zh, def.name_en]
  return first || second || key
}

/** `PM10（μg/m³）` / `PM10 (μg/m³)`; the bare name without a unit. */
export function metricLabel(def: MetricDef | undefined, key: string, locale: string): string {
  const name = metricName(def, key, locale)
  if (!def?.unit) return name
  return locale === 'en' ? `${name} (${def.unit})` : `${name}（${def.unit}）`
}

/** Sensor metrics first, the edge agent's own health metrics (`agent.*`) after them, each by key. */
export function byMetricInterest(a: string, b: string): number {
  const rank = (k: string) => (k.startsWith('agent.') ? 1 : 0)
  return rank(a) - rank(b) || a.localeCompare(b)
}

/** A value for reading: at most 3 decimals, no trailing zeros. */
export function formatValue(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—'
  return String(Number(v.toFixed(3)))
}

// --- series ---

export const RANGE_PRESETS = [
  { key: '1h', ms: 3600_000 },
  { key: '6h', ms: 6 * 3600_000 },
  { key: '24h', ms: 24 * 3600_000 },
  { key: '7d', ms: 7 * 86_400_000 },
  { key: '30d', ms: 30 * 86_400_000 },
] as const

/** Bucket widths in seconds the browser asks for: round numbers people read on an axis. */
export const STEP_LADDER = [
  1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
] as const

/** How many points a chart needs to look continuous at full width without overloading it. */
export const TARGET_POINTS = 720

/**
 * The bucket width (seconds) for showing `[fromMs, toMs)` in about `target` points: the smallest
 * ladder step that gives no more than that; the largest step for very long ranges.
 */
export function stepFor(fromMs: number, toMs: number, target = TARGET_POINTS): number {
  const span = Math.max(0, toMs - fromMs) / 1000
  for (const s of STEP_LADDER) {
    if (span / s <= target) return s
  }
  return STEP_LADDER[STEP_LADDER.length - 1]
}

/** The query string of `GET /api/v1/series` for a device, metric and range, bucketed by `stepFor`. */
export function seriesQuery(device: string, metric: string, fromMs: number, toMs: number): string {
  const q = new URLSearchParams({
    device,
    metric,
    from: new Date(fromMs).toISOString(),
    to: new Date(toMs).toISOString(),
    step: `${stepFor(fromMs, toMs)}s`,
  })
  return `?${q.toString()}`
}

/**
 * Whether a zoomed view deserves a fresh query: the view is a window of the loaded range that a
 * finer step would show at least twice as sharply. Small pans and zooms reuse what is loaded.
 */
export function zoomNeedsReload(loadedStep: number, viewFromMs: number, viewToMs: number): boolean {
  if (!(viewToMs > viewFromMs)) return false
  return stepFor(viewFromMs, viewToMs) * 2 <= loadedStep
}

/** The chart's line ([ms, mean]) and, for buckets, its band ([ms, min, max]), sorted by time. */
export function chartSeries(items: readonly SeriesPoint[]): {
  line: [number, number][]
  band: [number, number, number][]
  /** Quality bits of raw points that have any, by time (ms). */
  quality: Record<number, number>
} {
  const line: [number, number][] = []
  const band: [number, number, number][] = []
  const quality: Record<number, number> = {}
  for (const p of items) {
    const t = Date.parse(p.ts)
    if (!Number.isFinite(t) || !Number.isFinite(p.value)) continue
    line.push([t, p.value])
    if (typeof p.min === 'number' && typeof p.max === 'number') band.push([t, p.min, p.max])
    if (p.quality) quality[t] = p.quality
  }
  line.sort((a, b) => a[0] - b[0])
  band.sort((a, b) => a[0] - b[0])
  return { line, band, quality }
}

// --- credentials ---

export interface CredentialFile {
  /** Which part it is (i18n key under `dev.cred`). */
  part: 'bundle' | 'token' | 'cert' | 'key' | 'ca'
  filename: string
  content: string
  mime: string
}

/**
 * The files a device's credentials are saved as: the whole bundle as `<id>.credentials.json` (what
 * `offsite edge-agent` reads, like `offsite device add --out`), and each part on its own for other
 * MQTT clients. The CA is the platform's, the same for every device.
 */
export function credentialFiles(c: DeviceCredentials): CredentialFile[] {
  const id = c.device_id
  return [
    { part: 'bundle', filename: `${id}.credentials.json`, content: `${JSON.stringify(c, null, 2)}\n`, mime: 'application/json' },
    { part: 'token', filename: `${id}.token.txt`, content: `${c.token}\n`, mime: 'text/plain' },
    { part: 'cert', filename: `${id}.cert.pem`, content: c.cert_pem, mime: 'application/x-pem-file' },
    { part: 'key', filename: `${id}.key.pem`, content: c.key_pem, mime: 'application/x-pem-file' },
    { part: 'ca', filename: 'offsite-ca.pem', content: c.ca_pem, mime: 'application/x-pem-file' },
  ]
}

/** The registration body: a trimmed name (1 to 200 characters), object and class only when given. */
export function registrationBody(form: { name: string; object_id: string; class: string }):
  | { ok: true; body: { name: string; object_id?: string; class?: string } }
  | { ok: false; field: 'name' | 'class' } {
  const name = form.name.trim()
  if (!name || [...name].length > 200) return { ok: false, field: 'name' }
  const body: { name: string; object_id?: string; class?: string } = { name }
  if (form.object_id.trim()) body.object_id = form.object_id.trim()
  const cls = form.class.trim()
  if (cls) {
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(cls)) return { ok: false, field: 'class' }
    body.class = cls
  }
  return { ok: true, body }
}

// --- Shanghai wall times for date pickers ---

/**
 * Date pickers show the browser's zone; the platform's is Asia/Shanghai (UTC+8 all year, no daylight
 * saving). So pickers work on Shanghai wall-clock strings (`YYYY-MM-DD HH:mm:ss`) converted here.
 */
export function shanghaiToMs(s: string | null | undefined): number | null {
  if (!s) return null
  const m = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2})(:\d{2})?$/.exec(s.trim())
  if (!m) return null
  const t = Date.parse(`${m[1]}T${m[2]}${m[3] ?? ':00'}+08:00`)
  return Number.isFinite(t) ? t : null
}

/** The Shanghai wall-clock string of a moment, as the pickers take it. */
export function msToShanghai(ms: number): string {
  return formatTime(ms)
}
