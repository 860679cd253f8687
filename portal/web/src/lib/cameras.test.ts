import { describe, expect, it } from 'vitest'
import {
  addPoint,
  closes,
  evidenceSnapshotId,
  finishZone,
  labelAt,
  movePoint,
  nextZoneId,
  normalise,
  onlineCount,
  recentSnapshots,
  removeZone,
  svgPoints,
  undoPoint,
  zoneProblem,
  type Camera,
  type Point,
  type Zone,
} from './cameras'

const tri: Point[] = [
  [0.1, 0.1],
  [0.5, 0.1],
  [0.5, 0.6],
]

function camera(over: Partial<Camera>): Camera {
  return {
    device_id: 'd1',
    device_name: 'd1',
    object_id: null,
    camera_id: 'c1',
    name: '大厅',
    online: true,
    fps: 5,
    last_frame_at: null,
    detection: { state: 'off', reason: 'no model' },
    zones: [],
    health: [],
    updated_at: '2026-11-27T02:00:00Z',
    latest_snapshot_id: null,
    latest_snapshot_at: null,
    ...over,
  }
}

describe('coordinates', () => {
  it('normalises clicks to the unit square, clamped, 4 decimals', () => {
    expect(normalise(320, 90, 640, 360)).toEqual([0.5, 0.25])
    expect(normalise(-5, 400, 640, 360)).toEqual([0, 1])
    expect(normalise(100, 100, 300, 300)).toEqual([0.3333, 0.3333])
    expect(normalise(10, 10, 0, 360)).toEqual([0, 0.0278])
  })

  it('draws polygons as SVG points in any box', () => {
    expect(svgPoints(tri)).toBe('0.1,0.1 0.5,0.1 0.5,0.6')
    expect(svgPoints(tri, 640, 360)).toBe('64,36 320,36 320,216')
    expect(labelAt(tri)[0]).toBeCloseTo(0.3667, 4)
  })
})

describe('polygon editing', () => {
  it('adds, undoes and closes on the first point', () => {
    let d: Point[] = []
    d = addPoint(d, [0.1, 0.1])
    d = addPoint(d, [0.5, 0.1])
    expect(closes(d, [0.1, 0.1])).toBe(false)
    d = addPoint(d, [0.5, 0.6])
    expect(closes(d, [0.105, 0.11])).toBe(true)
    expect(closes(d, [0.3, 0.3])).toBe(false)
    expect(undoPoint(d)).toHaveLength(2)
  })

  it('finishes zones with fresh ids, moves corners and removes zones', () => {
    let zones: Zone[] = finishZone([], tri, 'window', ' 1号窗口 ')
    expect(zones).toEqual([{ id: 'window-1', name: '1号窗口', kind: 'window', polygon: tri }])
    zones = finishZone(zones, tri, 'window', '')
    expect(zones[1].id).toBe('window-2')
    expect(zones[1].name).toBe('window-2')
    expect(finishZone(zones, tri.slice(0, 2), 'queue', 'x')).toHaveLength(2)
    expect(nextZoneId(removeZone(zones, 'window-1'), 'window')).toBe('window-1')
    const moved = movePoint(zones, 'window-2', 1, [0.9, 0.2])
    expect(moved[1].polygon[1]).toEqual([0.9, 0.2])
    expect(moved[0].polygon).toEqual(tri)
    expect(movePoint(zones, 'window-2', 7, [0.9, 0.2])).toEqual(zones)
  })

  it('finds what the server would refuse', () => {
    const z: Zone = { id: 'w1', name: '窗口', kind: 'window', polygon: tri }
    expect(zoneProblem(z)).toBeNull()
    expect(zoneProblem({ ...z, id: 'W 1' })).toBe('id')
    expect(zoneProblem(z, [z, { ...z }])).toBe('duplicate')
    expect(zoneProblem({ ...z, name: '  ' })).toBe('name')
    expect(zoneProblem({ ...z, polygon: tri.slice(0, 2) })).toBe('points')
    expect(zoneProblem({ ...z, polygon: [[0.1, 0.1], [1.2, 0.1], [0.5, 0.5]] })).toBe('range')
  })
})

describe('cameras', () => {
  it('counts online cameras and picks the newest snapshots', () => {
    const cams = [
      camera({ camera_id: 'a', latest_snapshot_id: 1, latest_snapshot_at: '2026-11-27T01:00:00Z' }),
      camera({ camera_id: 'b', online: true, health: ['offline'], latest_snapshot_id: 2, latest_snapshot_at: '2026-11-27T03:00:00Z' }),
      camera({ camera_id: 'c', online: false }),
    ]
    expect(onlineCount(cams)).toEqual({ online: 1, total: 3 })
    expect(recentSnapshots(cams).map((s) => s.id)).toEqual([2, 1])
    expect(recentSnapshots(cams, 1).map((s) => s.camera.camera_id)).toEqual(['b'])
  })

  it('reads the snapshot id from a warning evidence', () => {
    expect(evidenceSnapshotId({ snapshot_id: 12 })).toBe(12)
    expect(evidenceSnapshotId({ snapshot_id: null })).toBeNull()
    expect(evidenceSnapshotId({ snapshot_id: '12' })).toBeNull()
    expect(evidenceSnapshotId(null)).toBeNull()
  })
})
