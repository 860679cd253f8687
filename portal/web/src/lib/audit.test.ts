import { describe, expect, it } from 'vitest'
import { auditQuery, changedKeys, emptyAuditFilters, formatDetail, shanghaiToIso } from './audit'

describe('audit filters', () => {
  it('read picked times as Asia/Shanghai', () => {
    expect(shanghaiToIso('2026-05-01 08:00:00')).toBe('2026-05-01T00:00:00.000Z')
    expect(shanghaiToIso('2026-01-01 03:30')).toBe('2025-12-31T19:30:00.000Z')
    expect(shanghaiToIso('2026-02-30 08:00:00')).toBeNull()
    expect(shanghaiToIso('2026-05-01 24:00:00')).toBeNull()
    expect(shanghaiToIso('yesterday')).toBeNull()
  })

  it('leave empty filters out and page by offset', () => {
    expect(auditQuery(emptyAuditFilters(), 1, 50)).toBe('?limit=50&offset=0')
    const q = new URLSearchParams(
      auditQuery(
        { actor: ' handler1 ', action: 'task. *', entity: 'task', entityId: ' 42 ', range: ['2026-05-01 00:00:00', '2026-05-02 00:00:00'] },
        3,
        20,
      ).slice(1),
    )
    expect(Object.fromEntries(q)).toEqual({
      actor: 'handler1',
      action: 'task.*',
      entity: 'task',
      entity_id: '42',
      since: '2026-04-30T16:00:00.000Z',
      until: '2026-05-01T16:00:00.000Z',
      limit: '20',
      offset: '40',
    })
  })
})

describe('audit details', () => {
  it('name the changed keys', () => {
    expect(changedKeys({ state: 'dispatched', level: 2 }, { state: 'signed', level: 2, note: 'x' })).toEqual(['note', 'state'])
    expect(changedKeys(null, { a: 1 })).toEqual(['a'])
    expect(changedKeys({ a: [1, 2] }, { a: [1, 2] })).toEqual([])
  })

  it('show JSON or a dash', () => {
    expect(formatDetail(null)).toBe('—')
    expect(formatDetail({ a: 1 })).toBe('{\n  "a": 1\n}')
  })
})
