// Cameras (GET /api/v1/cameras) and the zone editor's geometry. Zones are polygons in coordinates
// normalised to the picture (0..1, origin top left, wire/src/camera.rs), so the same layout fits
// any resolution; the page turns clicks into those coordinates and draws zones in an SVG whose
// viewBox is the unit square.
import { api, get } from './api'

export type ZoneKind = 'window' | 'queue' | 'other'
export type Point = [number, number]

export interface Zone {
  id: string
  name: string
  kind: ZoneKind
  polygon: Point[]
}

export type Detection = { state: 'on'; model: string } | { state: 'off'; reason: string }

export interface Camera {
  device_id: string
  device_name: string
  object_id: string | null
  camera_id: string
  name: string
  online: boolean
  fps: number
  last_frame_at: string | null
  detection: Detection
  zones: Zone[]
  /** Health conditions raised now: offline, black, frozen, covered, moved. */
  health: string[]
  updated_at: string
  latest_snapshot_id: number | null
  latest_snapshot_at: string | null
}

export async function listCameras(): Promise<Camera[]> {
  return (await get<{ items: Camera[] }>('/api/v1/cameras')).items
}

export function snapshotUrl(id: number): string {
  return `/api/v1/snapshots/${id}`
}

/** The camera editor's route for one camera. */
export function cameraPath(c: Pick<Camera, 'device_id' | 'camera_id'>): string {
  return `/cameras/${encodeURIComponent(c.device_id)}/${encodeURIComponent(c.camera_id)}`
}

export function saveZones(device: string, camera: string, zones: Zone[]): Promise<{ command_id: string; sent: boolean }> {
  return api('PUT', `/api/v1/cameras/${encodeURIComponent(device)}/${encodeURIComponent(camera)}/zones`, { zones })
}

/** The camera's snapshot id in a warning's evidence, when it has one. */
export function evidenceSnapshotId(evidence: unknown): number | null {
  const id = (evidence as { snapshot_id?: unknown } | null)?.snapshot_id
  return typeof id === 'number' && Number.isInteger(id) && id > 0 ? id : null
}

/** A click at (x, y) pixels inside a box of width x height as a normalised point (clamped, 4 decimals). */
export function normalise(x: number, y: number, width: number, height: number): Point {
  const unit = (v: number, size: number) => {
    if (!(size > 0) || !Number.isFinite(v)) return 0
    return Math.round(Math.min(1, Math.max(0, v / size)) * 10000) / 10000
  }
  return [unit(x, width), unit(y, height)]
}

/** An SVG `points` attribute for a polygon drawn in a viewBox of `width` x `height` (1 x 1 by default). */
export function svgPoints(polygon: readonly Point[], width = 1, height = 1): string {
  return polygon.map(([x, y]) => `${round(x * width)},${round(y * height)}`).join(' ')
}

function round(v: number): number {
  return Math.round(v * 10000) / 10000
}

/** Where a zone's label goes: the centroid of its points. */
export function labelAt(polygon: readonly Point[]): Point {
  if (polygon.length === 0) return [0, 0]
  const sx = polygon.reduce((s, p) => s + p[0], 0)
  const sy = polygon.reduce((s, p) => s + p[1], 0)
  return [sx / polygon.length, sy / polygon.length]
}

const ID = /^[a-z0-9][a-z0-9_-]{0,31}$/

/** Why a zone would be refused by the server (wire `Zone::check` and the portal's rules); null when fine. */
export function zoneProblem(z: Zone, others: readonly Zone[] = []): 'id' | 'duplicate' | 'name' | 'points' | 'range' | null {
  if (!ID.test(z.id)) return 'id'
  if (others.some((o) => o !== z && o.id === z.id)) return 'duplicate'
  const name = z.name.trim()
  if (name === '' || [...name].length > 64) return 'name'
  if (z.polygon.length < 3 || z.polygon.length > 64) return 'points'
  if (z.polygon.some((p) => p.some((c) => !Number.isFinite(c) || c < 0 || c > 1))) return 'range'
  return null
}

/** A fresh zone id for `kind` not used yet: window-1, window-2, queue-1, ... */
export function nextZoneId(zones: readonly Zone[], kind: ZoneKind): string {
  const used = new Set(zones.map((z) => z.id))
  for (let n = 1; ; n++) {
    const id = `${kind}-${n}`
    if (!used.has(id)) return id
  }
}

/** The polygon being drawn with one more point (a click on the first point closes it instead: see `closes`). */
export function addPoint(draft: readonly Point[], p: Point): Point[] {
  return [...draft, p]
}

/** Whether a click at `p` lands on the draft's first point (within `tolerance`, normalised) and so closes it. */
export function closes(draft: readonly Point[], p: Point, tolerance = 0.02): boolean {
  if (draft.length < 3) return false
  const [x, y] = draft[0]
  return Math.hypot(p[0] - x, p[1] - y) <= tolerance
}

/** The draft without its last point. */
export function undoPoint(draft: readonly Point[]): Point[] {
  return draft.slice(0, -1)
}

/** Zones with the finished draft added as a new zone; unchanged when the draft has fewer than three points. */
export function finishZone(zones: readonly Zone[], draft: readonly Point[], kind: ZoneKind, name: string): Zone[] {
  if (draft.length < 3) return [...zones]
  const id = nextZoneId(zones, kind)
  return [...zones, { id, name: name.trim() || id, kind, polygon: draft.map((p) => [p[0], p[1]] as Point) }]
}

/** Zones with the one of `id` removed. */
export function removeZone(zones: readonly Zone[], id: string): Zone[] {
  return zones.filter((z) => z.id !== id)
}

/** Zones with point `index` of zone `id` moved to `p` (dragging a corner). */
export function movePoint(zones: readonly Zone[], id: string, index: number, p: Point): Zone[] {
  return zones.map((z) =>
    z.id === id && index >= 0 && index < z.polygon.length ? { ...z, polygon: z.polygon.map((q, i) => (i === index ? p : q)) } : z,
  )
}

/** Cameras online (not reporting `offline`) out of all. */
export function onlineCount(cameras: readonly Camera[]): { online: number; total: number } {
  return { online: cameras.filter((c) => c.online && !c.health.includes('offline')).length, total: cameras.length }
}

/** The newest snapshots across cameras (one per camera), newest first, at most `max`. */
export function recentSnapshots(cameras: readonly Camera[], max = 4): { id: number; camera: Camera }[] {
  return cameras
    .filter((c) => c.latest_snapshot_id !== null)
    .sort((a, b) => Date.parse(b.latest_snapshot_at ?? '') - Date.parse(a.latest_snapshot_at ?? ''))
    .slice(0, max)
    .map((c) => ({ id: c.latest_snapshot_id as number, camera: c }))
}
