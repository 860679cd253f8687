import { describe, expect, it } from 'vitest'
import { describeMatchers, emptySilenceForm, silenceBody, silenceFormFor, silenceState } from './silences'

describe('silence form', () => {
  it('starts from a warning with its device and rule ticked', () => {
    const f = silenceFormFor({ device_id: 'dabc123', object_id: 'site-1', metric_key: 'pm10', event: 'rule:3' })
    expect(f.use).toEqual({ device: true, object: false, metric: false, event: true })
    expect(f.value).toEqual({ device: 'dabc123', object: 'site-1', metric: 'pm10', event: 'rule:3' })
    f.reason = ' 设备检修 '
    expect(silenceBody(f)).toEqual({ ok: true, body: { device: 'dabc123', event: 'rule:3', duration_s: 7200, reason: '设备检修' } })
  })

  it('leaves out what a warning does not have', () => {
    const f = silenceFormFor({ device_id: 'd1', object_id: null, metric_key: null, event: null })
    expect(f.use).toEqual({ device: true, object: false, metric: false, event: false })
  })

  it('sends ticked matchers only, and the duration in seconds', () => {
    const f = emptySilenceForm()
    f.use.object = true
    f.value.object = 'site-9'
    f.value.device = 'not used'
    f.amount = 3
    f.unit = 'd'
    f.reason = 'r'
    expect(silenceBody(f)).toEqual({ ok: true, body: { object: 'site-9', duration_s: 3 * 86400, reason: 'r' } })
  })

  it('refuses a silence of everything, bad matchers, durations and reasons', () => {
    const errors = (change: (f: ReturnType<typeof emptySilenceForm>) => void) => {
      const f = emptySilenceForm()
      f.use.device = true
      f.value.device = 'd1'
      f.reason = 'r'
      change(f)
      const r = silenceBody(f)
      return r.ok ? {} : r.errors
    }
    expect(errors((f) => (f.use.device = false))).toEqual({ matchers: 'cfg.silences.err.noMatcher' })
    expect(errors((f) => (f.value.device = 'd-1'))).toEqual({ device: 'cfg.silences.err.device' })
    expect(errors((f) => ((f.use.metric = true), (f.value.metric = 'pm 10')))).toEqual({ metric: 'cfg.silences.err.metric' })
    expect(errors((f) => (f.value.device = ' '))).toEqual({ device: 'cfg.silences.err.empty' })
    expect(errors((f) => (f.amount = 0))).toEqual({ duration: 'cfg.silences.err.duration' })
    expect(errors((f) => (f.amount = 1.5))).toEqual({ duration: 'cfg.silences.err.duration' })
    expect(errors((f) => ((f.amount = 367), (f.unit = 'd')))).toEqual({ duration: 'cfg.silences.err.tooLong' })
    expect(errors((f) => ((f.amount = 366), (f.unit = 'd')))).toEqual({})
    expect(errors((f) => (f.reason = '  '))).toEqual({ reason: 'cfg.silences.err.reason' })
    expect(errors((f) => (f.reason = '长'.repeat(1001)))).toEqual({ reason: 'cfg.silences.err.reasonLong' })
  })
})

describe('silence list', () => {
  it('tells pending from active', () => {
    const now = Date.parse('2026-05-01T08:00:00Z')
    expect(silenceState({ starts_at: '2026-05-01T09:00:00Z' }, now)).toBe('pending')
    expect(silenceState({ starts_at: '2026-05-01T08:00:00Z' }, now)).toBe('active')
  })

  it('describes matchers, with * for everything', () => {
    expect(describeMatchers({ device: 'd1', object: null, metric: null, event: 'rule:3' })).toBe('device=d1 · event=rule:3')
    expect(describeMatchers({ device: null })).toBe('*')
  })
})
