// Warning rules as the portal speaks them (store/src/rules.rs, portal/src/routes/rules.rs): a
// scope (device, object, device class, metric; unset = any), a level, one condition of four kinds
// and an optional regulatory item. The form keeps every number as typed text so that "left empty"
// and "not a number" can be told apart; `ruleBody` checks what the server checks and builds the
// JSON with unset fields left out (the server refuses empty strings and unknown fields).

export type ConditionKind = 'threshold' | 'rate_of_change' | 'flat_line' | 'data_gap'
export const CONDITION_KINDS: readonly ConditionKind[] = ['threshold', 'rate_of_change', 'flat_line', 'data_gap']

export type Condition =
  | { kind: 'threshold'; above: number | null; below: number | null; for_s: number; hysteresis: number }
  | { kind: 'rate_of_change'; max_per_minute: number }
  | { kind: 'flat_line'; for_s: number; epsilon: number }
  | { kind: 'data_gap'; max_gap_s: number }

export interface Scope {
  device?: string | null
  object?: string | null
  class?: string | null
  metric?: string | null
}

export interface Rule {
  id: number
  name: string
  scope: Scope
  level: number
  condition: Condition
  item: string | null
  enabled: boolean
}

export interface RuleForm {
  name: string
  level: number
  enabled: boolean
  item: string
  device: string
  object: string
  class: string
  metric: string
  kind: ConditionKind
  above: string
  below: string
  forS: string
  hysteresis: string
  maxPerMinute: string
  epsilon: string
  maxGapS: string
}

export type RuleField = keyof RuleForm

export function emptyRuleForm(): RuleForm {
  return {
    name: '',
    level: 3,
    enabled: true,
    item: '',
    device: '',
    object: '',
    class: '',
    metric: '',
    kind: 'threshold',
    above: '',
    below: '',
    forS: '0',
    hysteresis: '0',
    maxPerMinute: '',
    epsilon: '0',
    maxGapS: '',
  }
}

const text = (v: number | null | undefined) => (v === null || v === undefined ? '' : String(v))

export function ruleForm(r: Rule): RuleForm {
  const f = emptyRuleForm()
  Object.assign(f, {
    name: r.name,
    level: r.level,
    enabled: r.enabled,
    item: r.item ?? '',
    device: r.scope.device ?? '',
    object: r.scope.object ?? '',
    class: r.scope.class ?? '',
    metric: r.scope.metric ?? '',
    kind: r.condition.kind,
  })
  const c = r.condition
  if (c.kind === 'threshold') Object.assign(f, { above: text(c.above), below: text(c.below), forS: text(c.for_s), hysteresis: text(c.hysteresis) })
  if (c.kind === 'rate_of_change') f.maxPerMinute = text(c.max_per_minute)
  if (c.kind === 'flat_line') Object.assign(f, { forS: text(c.for_s), epsilon: text(c.epsilon) })
  if (c.kind === 'data_gap') f.maxGapS = text(c.max_gap_s)
  return f
}

/** The JSON body, or the fields at fault with the i18n key of what is wrong with each. */
export type RuleCheck = { ok: true; body: Record<string, unknown> } | { ok: false; errors: Partial<Record<RuleField, string>> }

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/

/** A decimal number as typed; `null` when empty, `NaN` when not a number. */
export function readNumber(s: string): number | null {
  const t = s.trim()
  if (t === '') return null
  return NUMBER.test(t) ? Number(t) : NaN
}

export function ruleBody(f: RuleForm): RuleCheck {
  const errors: Partial<Record<RuleField, string>> = {}
  const name = f.name.trim()
  if (name === '' || [...name].length > 200) errors.name = 'cfg.rules.err.name'
  if (![1, 2, 3, 4].includes(f.level)) errors.level = 'cfg.rules.err.level'

  // `min`: the smallest allowed value; `strict`: must be above it; `whole`: seconds are whole.
  const num = (field: RuleField, opts: { required: boolean; min?: number; strict?: boolean; whole?: boolean }) => {
    const v = readNumber(f[field] as string)
    if (v === null) {
      if (opts.required) errors[field] = 'cfg.rules.err.required'
      return null
    }
    if (!Number.isFinite(v)) errors[field] = 'cfg.rules.err.number'
    else if (opts.whole && !Number.isInteger(v)) errors[field] = 'cfg.rules.err.whole'
    else if (opts.min !== undefined && (opts.strict ? v <= opts.min : v < opts.min))
      errors[field] = opts.strict ? 'cfg.rules.err.positive' : 'cfg.rules.err.nonNegative'
    return v
  }

  let condition: Record<string, unknown>
  switch (f.kind) {
    case 'threshold': {
      const above = num('above', { required: false })
      const below = num('below', { required: false })
      if (above === null && below === null) errors.above = 'cfg.rules.err.bound'
      else if (above !== null && below !== null && !(below < above)) errors.below = 'cfg.rules.err.belowAbove'
      const forS = num('forS', { required: false, min: 0, whole: true }) ?? 0
      const hysteresis = num('hysteresis', { required: false, min: 0 }) ?? 0
      condition = { kind: 'threshold', above, below, for_s: forS, hysteresis }
      break
    }
    case 'rate_of_change':
      condition = { kind: 'rate_of_change', max_per_minute: num('maxPerMinute', { required: true, min: 0, strict: true }) }
      break
    case 'flat_line':
      condition = {
        kind: 'flat_line',
        for_s: num('forS', { required: true, min: 0, strict: true, whole: true }),
        epsilon: num('epsilon', { required: false, min: 0 }) ?? 0,
      }
      break
    case 'data_gap':
      condition = { kind: 'data_gap', max_gap_s: num('maxGapS', { required: true, min: 0, strict: true, whole: true }) }
      break
    default:
      errors.kind = 'cfg.rules.err.kind'
      condition = {}
  }
  if (Object.keys(errors).length) return { ok: false, errors }

  const scope: Record<string, string> = {}
  for (const k of ['device', 'object', 'class', 'metric'] as const) {
    const v = f[k].trim()
    if (v) scope[k] = v
  }
  const body: Record<string, unknown> = { name, level: f.level, enabled: f.enabled, scope, condition }
  if (f.item.trim()) body.item = f.item.trim()
  return { ok: true, body }
}

/**
 * Which form field a server refusal is about (its English message names the field, see
 * parse_rule in portal/src/routes/rules.rs); `null` when it names none we show.
 */
export function serverField(message: string): RuleField | null {
  const m = message.toLowerCase()
  const table: [RegExp, RuleField][] = [
    [/^item:|`item`|\bitem must\b/, 'item'],
    [/scope\.device/, 'device'],
    [/scope\.object/, 'object'],
    [/scope\.class/, 'class'],
    [/scope\.metric/, 'metric'],
    [/rule name|\bname:|`name`/, 'name'],
    [/level/, 'level'],
    [/`above` or `below`/, 'above'],
    [/hysteresis/, 'hysteresis'],
    [/max_per_minute/, 'maxPerMinute'],
    [/max_gap_s/, 'maxGapS'],
    [/epsilon|flat line|for_s/, 'forS'],
    [/unknown variant|condition/, 'kind'],
  ]
  for (const [re, field] of table) if (re.test(m)) return field
  return null
}

const fmt = (n: number | null | undefined) => (n === null || n === undefined ? '' : String(n))

/** One line saying what a condition watches for: `> 150 持续 20 秒（回差 10）`. */
export function describeCondition(c: Condition, locale: string): string {
  const en = locale === 'en'
  switch (c.kind) {
    case 'threshold': {
      const parts: string[] = []
      if (c.above !== null && c.above !== undefined) parts.push(`> ${fmt(c.above)}`)
      if (c.below !== null && c.below !== undefined) parts.push(`< ${fmt(c.below)}`)
      let s = parts.join(en ? ' or ' : ' 或 ')
      if (c.for_s) s += en ? ` for ${c.for_s} s` : ` 持续 ${c.for_s} 秒`
      if (c.hysteresis) s += en ? ` (hysteresis ${fmt(c.hysteresis)})` : `（回差 ${fmt(c.hysteresis)}）`
      return s
    }
    case 'rate_of_change':
      return en ? `changes by more than ${fmt(c.max_per_minute)} per minute` : `每分钟变化超过 ${fmt(c.max_per_minute)}`
    case 'flat_line':
      return en
        ? `unchanged (within ${fmt(c.epsilon)}) for ${c.for_s} s`
        : `${c.for_s} 秒内无变化（容差 ${fmt(c.epsilon)}）`
    case 'data_gap':
      return en ? `no data for ${c.max_gap_s} s` : `${c.max_gap_s} 秒无数据`
  }
}
