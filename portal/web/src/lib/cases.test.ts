import { describe, expect, it } from 'vitest'
import { advanceBody, mayWorkOnCases, stepIndex, type AdvanceForm } from './cases'

const form = (over: Partial<AdvanceForm> = {}): AdvanceForm => ({
  note: '',
  penalty: '',
  amount_yuan: '',
  legal_basis: '',
  disclose: false,
  ...over,
})

describe('case stages', () => {
  it('places the current stage on the steps, all done once closed', () => {
    expect(stepIndex('filed')).toBe(0)
    expect(stepIndex('decided')).toBe(2)
    expect(stepIndex('closed')).toBe(5)
    expect(stepIndex('bogus')).toBe(0)
  })
  it('lets the department and the system administrator work on cases', () => {
    expect(mayWorkOnCases(['handler'])).toBe(true)
    expect(mayWorkOnCases(['system_admin'])).toBe(true)
    expect(mayWorkOnCases(['monitor', 'reviewer'])).toBe(false)
  })
})

describe('advancing', () => {
  it('sends only the stage and a note outside the decision', () => {
    expect(advanceBody('investigating', form({ note: ' 现场取证 ', penalty: 'fine', amount_yuan: '5' }))).toEqual({
      ok: true,
      body: { stage: 'investigating', note: '现场取证' },
    })
  })
  it('needs a penalty, and for a fine a positive amount with two decimals at most', () => {
    expect(advanceBody('decided', form())).toEqual({ ok: false, field: 'penalty' })
    for (const bad of ['', '0', '-5', '1.234', 'abc', '01']) {
      expect(advanceBody('decided', form({ penalty: 'fine', amount_yuan: bad }))).toEqual({ ok: false, field: 'amount_yuan' })
    }
    expect(advanceBody('decided', form({ penalty: 'fine', amount_yuan: '50000.5', disclose: true }))).toEqual({
      ok: true,
      body: { stage: 'decided', penalty: 'fine', amount_yuan: '50000.5', disclose: true },
    })
  })
  it('drops the amount for anything but a fine and keeps a given legal basis', () => {
    expect(advanceBody('decided', form({ penalty: 'warning', amount_yuan: '100', legal_basis: ' 第六十九条 ' }))).toEqual({
      ok: true,
      body: { stage: 'decided', penalty: 'warning', legal_basis: '第六十九条', disclose: false },
    })
  })
  it('refuses an overlong note', () => {
    expect(advanceBody('closed', form({ note: '字'.repeat(5001) }))).toEqual({ ok: false, field: 'note' })
  })
})
