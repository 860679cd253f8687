import { describe, expect, it } from 'vitest'
import { describeCondition, emptyRuleForm, readNumber, ruleBody, ruleForm, serverField, type Rule, type RuleForm } from './rules'

const form = (over: Partial<RuleForm>): RuleForm => ({ ...emptyRuleForm(), name: 'PM10 超标', ...over })

describe('rule form', () => {
  it('builds a threshold rule, leaving unset scope fields and the item out', () => {
    const r = ruleBody(form({ level: 2, metric: ' pm10 ', above: '150', forS: '600', hysteresis: '10' }))
    expect(r).toEqual({
      ok: true,
      body: {
        name: 'PM10 超标',
        level: 2,
        enabled: true,
        scope: { metric: 'pm10' },
        condition: { kind: 'threshold', above: 150, below: null, for_s: 600, hysteresis: 10 },
      },
    })
  })

  it('builds the other kinds with their own fields only', () => {
    const roc = ruleBody(form({ kind: 'rate_of_change', maxPerMinute: '2.5', item: 'demo-dust', device: 'd1' }))
    expect(roc.ok && roc.body).toMatchObject({ item: 'demo-dust', scope: { device: 'd1' }, condition: { kind: 'rate_of_change', max_per_minute: 2.5 } })
    const flat = ruleBody(form({ kind: 'flat_line', forS: '300', epsilon: '' }))
    expect(flat.ok && flat.body.condition).toEqual({ kind: 'flat_line', for_s: 300, epsilon: 0 })
    const gap = ruleBody(form({ kind: 'data_gap', maxGapS: '120' }))
    expect(gap.ok && gap.body.condition).toEqual({ kind: 'data_gap', max_gap_s: 120 })
  })

  it('names each field the server would refuse', () => {
    const errs = (f: Partial<RuleForm>) => {
      const r = ruleBody(form(f))
      return r.ok ? {} : r.errors
    }
    expect(errs({ name: '  ', above: '1' })).toEqual({ name: 'cfg.rules.err.name' })
    expect(errs({ name: 'x'.repeat(201), above: '1' })).toEqual({ name: 'cfg.rules.err.name' })
    expect(errs({ level: 5, above: '1' })).toEqual({ level: 'cfg.rules.err.level' })
    expect(errs({})).toEqual({ above: 'cfg.rules.err.bound' })
    expect(errs({ above: '10', below: '20' })).toEqual({ below: 'cfg.rules.err.belowAbove' })
    expect(errs({ above: 'abc' })).toEqual({ above: 'cfg.rules.err.number' })
    expect(errs({ above: '1', hysteresis: '-1' })).toEqual({ hysteresis: 'cfg.rules.err.nonNegative' })
    expect(errs({ above: '1', forS: '1.5' })).toEqual({ forS: 'cfg.rules.err.whole' })
    expect(errs({ kind: 'rate_of_change', maxPerMinute: '0' })).toEqual({ maxPerMinute: 'cfg.rules.err.positive' })
    expect(errs({ kind: 'rate_of_change' })).toEqual({ maxPerMinute: 'cfg.rules.err.required' })
    expect(errs({ kind: 'flat_line', forS: '0' })).toEqual({ forS: 'cfg.rules.err.positive' })
    expect(errs({ kind: 'data_gap', maxGapS: '' })).toEqual({ maxGapS: 'cfg.rules.err.required' })
  })

  it('reads numbers strictly', () => {
    expect(readNumber(' 1e3 ')).toBe(1000)
    expect(readNumber('-0.5')).toBe(-0.5)
    expect(readNumber('')).toBeNull()
    expect(readNumber('0x10')).toBeNaN()
    expect(readNumber('12abc')).toBeNaN()
  })

  it('round-trips a stored rule through the form', () => {
    const rule: Rule = {
      id: 1,
      name: '冷库温度',
      scope: { device: null, object: null, class: 'cold-store', metric: 'cold_temp' },
      level: 1,
      condition: { kind: 'threshold', above: -18, below: null, for_s: 30, hysteresis: 1 },
      item: 'demo-cold-chain',
      enabled: false,
    }
    const r = ruleBody(ruleForm(rule))
    expect(r.ok && r.body).toEqual({
      name: '冷库温度',
      level: 1,
      enabled: false,
      scope: { class: 'cold-store', metric: 'cold_temp' },
      condition: rule.condition,
      item: 'demo-cold-chain',
    })
  })
})

describe('server refusals', () => {
  it('are put under the field they name', () => {
    expect(serverField('item: no published catalog item "x"')).toBe('item')
    expect(serverField('scope.device must not be empty; leave it out to match everything')).toBe('device')
    expect(serverField('invalid rule: rule name must be 1..=200 characters')).toBe('name')
    expect(serverField('invalid rule: threshold rule needs `above` or `below`')).toBe('above')
    expect(serverField('invalid rule: max_gap_s must be > 0')).toBe('maxGapS')
    expect(serverField('invalid rule: level: warning level must be 1..=4 (red, orange, yellow, blue), got 5')).toBe('level')
    expect(serverField('internal server error')).toBeNull()
  })
})

describe('condition summary', () => {
  it('says what each kind watches for', () => {
    expect(describeCondition({ kind: 'threshold', above: 150, below: null, for_s: 20, hysteresis: 10 }, 'zh-CN')).toBe('> 150 持续 20 秒（回差 10）')
    expect(describeCondition({ kind: 'threshold', above: 9, below: 6, for_s: 0, hysteresis: 0 }, 'en')).toBe('> 9 or < 6')
    expect(describeCondition({ kind: 'rate_of_change', max_per_minute: 5 }, 'en')).toBe('changes by more than 5 per minute')
    expect(describeCondition({ kind: 'flat_line', for_s: 600, epsilon: 0.1 }, 'zh-CN')).toBe('600 秒内无变化（容差 0.1）')
    expect(describeCondition({ kind: 'data_gap', max_gap_s: 120 }, 'zh-CN')).toBe('120 秒无数据')
  })
})
