import { describe, expect, it } from 'vitest'
import {
  byMetricInterest,
  chartSeries,
  credentialFiles,
  filterDevices,
  metricLabel,
  onlineRate,
  equipmentState,
  EQUIPMENT_STATES,
  qualityFlags,
  QUALITY_BITS,
  registrationBody,
  seriesQuery,
  stepFor,
  zoomNeedsReload,
  shanghaiToMs,
  msToShanghai,
  type Device,
  type MetricDef,
} from './devices'
import devicesModule from '../modules/devices'

const dev = (id: string, name: string, over: Partial<Device> = {}): Device => ({
  id,
  name,
  object_id: null,
  online: false,
  last_seen: null,
  created_at: '2026-01-01T00:00:00Z',
  revoked: false,
  revoked_at: null,
  rotated_at: null,
  cert_serial: null,
  cert_not_after: null,
  ...over,
})

describe('device list', () => {
  const items = [
    dev('d1', '扬尘监测仪 1号', { online: true, object_id: 'demo-site-01' }),
    dev('d2', 'Water meter', { object_id: 'ps-03' }),
    dev('d3', '扬尘监测仪 3号', { revoked: true, online: true }),
  ]
  it('filters by text in id, name or object and by status', () => {
    expect(filterDevices(items, '扬尘', 'all').map((d) => d.id)).toEqual(['d1', 'd3'])
    expect(filterDevices(items, 'WATER', 'all').map((d) => d.id)).toEqual(['d2'])
    expect(filterDevices(items, 'site-01', 'all').map((d) => d.id)).toEqual(['d1'])
    expect(filterDevices(items, '', 'online').map((d) => d.id)).toEqual(['d1'])
    // A revoked device is revoked, whatever its last status said.
    expect(filterDevices(items, '', 'revoked').map((d) => d.id)).toEqual(['d3'])
    expect(filterDevices(items, '', 'offline').map((d) => d.id)).toEqual(['d2'])
  })
  it('counts the online rate over devices not revoked', () => {
    expect(onlineRate(items)).toBe(50)
    expect(onlineRate([])).toBeNull()
  })
})

describe('metric labels', () => {
  const pm10: MetricDef = { id: 1, key: 'pm10', name_zh: '可吸入颗粒物', name_en: 'PM10', unit: 'μg/m³', valid_min: 0, valid_max: null }
  it('uses the language, then the other one, then the key', () => {
    expect(metricLabel(pm10, 'pm10', 'zh-CN')).toBe('可吸入颗粒物（μg/m³）')
    expect(metricLabel(pm10, 'pm10', 'en')).toBe('PM10 (μg/m³)')
    expect(metricLabel({ ...pm10, name_en: null, unit: null }, 'pm10', 'en')).toBe('可吸入颗粒物')
    expect(metricLabel(undefined, 'x.y', 'en')).toBe('x.y')
  })
})

describe('series queries', () => {
  const t0 = Date.parse('2026-05-01T00:00:00Z')
  it('picks the smallest round step that keeps the points near the target', () => {
    expect(stepFor(t0, t0 + 600_000)).toBe(1) // 10 min: 600 raw-second buckets
    expect(stepFor(t0, t0 + 3600_000)).toBe(5) // 1 h: 720 buckets of 5 s
    expect(stepFor(t0, t0 + 86_400_000)).toBe(120) // 24 h: 720 buckets of 2 min
    expect(stepFor(t0, t0 + 30 * 86_400_000)).toBe(3600)
    expect(stepFor(t0, t0 + 10_000 * 86_400_000)).toBe(86_400)
  })
  it('asks for an RFC 3339 range with the step', () => {
    const q = new URLSearchParams(seriesQuery('d1', 'pm10', t0, t0 + 86_400_000).slice(1))
    expect(q.get('device')).toBe('d1')
    expect(q.get('from')).toBe('2026-05-01T00:00:00.000Z')
    expect(q.get('to')).toBe('2026-05-02T00:00:00.000Z')
    expect(q.get('step')).toBe('120s')
  })
  it('reloads on zoom only when a finer step would be at least twice as sharp', () => {
    // Loaded 24 h at 120 s; a 12 h window would use 60 s: reload. A 20 h one (120 s) would not.
    expect(zoomNeedsReload(120, t0, t0 + 12 * 3600_000)).toBe(true)
    expect(zoomNeedsReload(120, t0, t0 + 20 * 3600_000)).toBe(false)
    expect(zoomNeedsReload(120, t0, t0)).toBe(false)
  })
  it('turns points into a sorted line and a min/max band', () => {
    const s = chartSeries([
      { ts: '2026-05-01T00:01:00Z', value: 2, min: 1, max: 3, count: 4 },
      { ts: '2026-05-01T00:00:00Z', value: 1, min: 0, max: 2, count: 4 },
      { ts: 'nope', value: 5 },
    ])
    expect(s.line).toEqual([
      [t0, 1],
      [t0 + 60_000, 2],
    ])
    expect(s.band).toEqual([
      [t0, 0, 2],
      [t0 + 60_000, 1, 3],
    ])
  })
})

describe('credentials', () => {
  const c = { device_id: 'dabc123', token: 'tok', cert_pem: 'CERT', key_pem: 'KEY', ca_pem: 'CA' }
  it('names each file after the device, the bundle as the edge agent reads it', () => {
    const files = credentialFiles(c)
    expect(files.map((f) => f.filename)).toEqual([
      'dabc123.credentials.json',
      'dabc123.token.txt',
      'dabc123.cert.pem',
      'dabc123.key.pem',
      'offsite-ca.pem',
    ])
    expect(JSON.parse(files[0].content)).toEqual(c)
    expect(files.find((f) => f.part === 'key')?.content).toBe('KEY')
  })
  it('builds the registration body', () => {
    expect(registrationBody({ name: '  仪器 ', object_id: '', class: '' })).toEqual({ ok: true, body: { name: '仪器' } })
    expect(registrationBody({ name: 'x', object_id: 'site-1', class: 'dust-monitor' })).toEqual({
      ok: true,
      body: { name: 'x', object_id: 'site-1', class: 'dust-monitor' },
    })
    expect(registrationBody({ name: '  ', object_id: '', class: '' })).toEqual({ ok: false, field: 'name' })
    expect(registrationBody({ name: '仪'.repeat(201), object_id: '', class: '' })).toEqual({ ok: false, field: 'name' })
    expect(registrationBody({ name: 'x', object_id: '', class: 'dust monitor' })).toEqual({ ok: false, field: 'class' })
  })
})

describe('Shanghai wall times', () => {
  it('reads picker values as UTC+8 whatever the browser zone', () => {
    expect(shanghaiToMs('2026-05-01 08:00:00')).toBe(Date.parse('2026-05-01T00:00:00Z'))
    expect(shanghaiToMs('2026-05-01T08:30')).toBe(Date.parse('2026-05-01T00:30:00Z'))
    expect(shanghaiToMs('yesterday')).toBeNull()
    expect(shanghaiToMs(null)).toBeNull()
  })
  it('writes them back', () => {
    expect(msToShanghai(Date.parse('2026-05-01T16:30:05Z'))).toBe('2026-05-02 00:30:05')
  })
})

describe('metric order', () => {
  it('puts sensor metrics before the agent health ones', () => {
    expect(['agent.dropped', 'pm10', 'agent.queue_depth', 'noise'].sort(byMetricInterest)).toEqual([
      'noise',
      'pm10',
      'agent.dropped',
      'agent.queue_depth',
    ])
  })
})

describe('quality flags', () => {
  it('names every bit set, in bit order, and nothing for good data', () => {
    expect(qualityFlags(0)).toEqual([])
    expect(qualityFlags(undefined)).toEqual([])
    expect(qualityFlags(1)).toEqual(['outOfRange'])
    // D (fault) and T (over range) together.
    expect(qualityFlags((1 << 4) | (1 << 6))).toEqual(['fault', 'overRange'])
    expect(qualityFlags(0xff)).toHaveLength(8)
  })

  it('has a zh and an en label for each flag', () => {
    for (const [, key] of QUALITY_BITS) {
      expect(devicesModule.messages.zh.dev.quality[key]).toBeTruthy()
      expect(devicesModule.messages.en.dev.quality[key]).toBeTruthy()
    }
  })

  it('keeps the flags of raw points for the chart tooltip', () => {
    const s = chartSeries([
      { ts: '2026-11-27T02:00:00Z', value: 35.2, quality: 0 },
      { ts: '2026-11-27T02:00:30Z', value: 900, quality: 1 << 6 },
    ])
    expect(s.quality).toEqual({ [Date.parse('2026-11-27T02:00:30Z')]: 1 << 6 })
  })
})

describe('equipment states', () => {
  it('reads SB<n>-RS values as running states and nothing else', () => {
    expect(equipmentState('SB1-RS', 1)).toBe('running')
    expect(equipmentState('SB12-RS', 5)).toBe('backFlush')
    expect(equipmentState('SB1-RS', 6)).toBeNull()
    expect(equipmentState('SB1-RS', 1.5)).toBeNull()
    expect(equipmentState('a34004-Rtd', 1)).toBeNull()
    for (const s of EQUIPMENT_STATES) {
      expect(devicesModule.messages.zh.dev.equipment[s]).toBeTruthy()
      expect(devicesModule.messages.en.dev.equipment[s]).toBeTruthy()
    }
  })
})
