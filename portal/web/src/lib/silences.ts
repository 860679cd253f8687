// Silences (portal/src/routes/silences.rs): matchers on device, object, metric and event (a
// rule's warnings carry `rule:<id>`, the anomaly model's `anomaly`); an unset matcher matches any,
// so a silence with none would hide every warning: the UI refuses that. Time-boxed (at most 366
// days) with a reason.

export interface Silence {
  id: number
  device: string | null
  object: string | null
  metric: string | null
  event: string | null
  starts_at: string
  ends_at: string
  reason: string
  created_by: string | null
  created_at: string
}

export type Matcher = 'device' | 'object' | 'metric' | 'event'
export const MATCHERS: readonly Matcher[] = ['device', 'object', 'metric', 'event']

export type DurationUnit = 'm' | 'h' | 'd'
const UNIT_S: Record<DurationUnit, number> = { m: 60, h: 3600, d: 86400 }
export const MAX_SILENCE_S = 366 * 86400
export const MAX_REASON = 1000

export interface SilenceForm {
  /** Which matchers apply, and their values. */
  use: Record<Matcher, boolean>
  value: Record<Matcher, string>
  amount: number
  unit: DurationUnit
  reason: string
}

export function emptySilenceForm(): SilenceForm {
  return {
    use: { device: false, object: false, metric: false, event: false },
    value: { device: '', object: '', metric: '', event: '' },
    amount: 2,
    unit: 'h',
    reason: '',
  }
}

/** What a warning offers to match on (`device_id`, `object_id`, `metric_key`, `event`). */
export interface SilenceSource {
  device_id?: string | null
  object_id?: string | null
  metric_key?: string | null
  event?: string | null
}

/**
 * A form for silencing warnings like this one: this device's warnings from this rule or model
 * (device and event) ticked; the object and metric filled in, to tick for a wider or narrower one.
 */
export function silenceFormFor(w: SilenceSource): SilenceForm {
  const f = emptySilenceForm()
  f.value = { device: w.device_id ?? '', object: w.object_id ?? '', metric: w.metric_key ?? '', event: w.event ?? '' }
  f.use.device = !!w.device_id
  f.use.event = !!w.event
  return f
}

const CHECKS: Record<Matcher, RegExp> = {
  device: /^[A-Za-z0-9]{1,32}$/,
  metric: /^[A-Za-z0-9_.-]{1,64}$/,
  object: /^.{1,200}$/su,
  event: /^.{1,200}$/su,
}

export type SilenceCheck =
  | { ok: true; body: Record<string, string | number> }
  | { ok: false; errors: Partial<Record<Matcher | 'matchers' | 'duration' | 'reason', string>> }

/** The POST body, or i18n keys of what is wrong, by field. */
export function silenceBody(f: SilenceForm): SilenceCheck {
  const errors: Partial<Record<Matcher | 'matchers' | 'duration' | 'reason', string>> = {}
  const body: Record<string, string | number> = {}
  for (const m of MATCHERS) {
    if (!f.use[m]) continue
    const v = f.value[m].trim()
    if (!v) errors[m] = 'cfg.silences.err.empty'
    else if (!CHECKS[m].test(v)) errors[m] = `cfg.silences.err.${m}`
    else body[m] = v
  }
  if (!MATCHERS.some((m) => f.use[m])) errors.matchers = 'cfg.silences.err.noMatcher'
  const seconds = f.amount * UNIT_S[f.unit]
  if (!Number.isInteger(f.amount) || f.amount <= 0 || !(f.unit in UNIT_S)) errors.duration = 'cfg.silences.err.duration'
  else if (seconds > MAX_SILENCE_S) errors.duration = 'cfg.silences.err.tooLong'
  else body.duration_s = seconds
  const reason = f.reason.trim()
  if (!reason) errors.reason = 'cfg.silences.err.reason'
  else if ([...reason].length > MAX_REASON) errors.reason = 'cfg.silences.err.reasonLong'
  else body.reason = reason
  return Object.keys(errors).length ? { ok: false, errors } : { ok: true, body }
}

/** `pending` before it starts, `active` while in force (the list holds nothing else). */
export function silenceState(s: Pick<Silence, 'starts_at'>, now: number): 'pending' | 'active' {
  return Date.parse(s.starts_at) > now ? 'pending' : 'active'
}

/** `device=d1 · event=rule:3`; `*` when nothing is matched (everything is silenced). */
export function describeMatchers(s: Partial<Record<Matcher, string | null>>): string {
  const parts = MATCHERS.filter((m) => s[m]).map((m) => `${m}=${s[m]}`)
  return parts.length ? parts.join(' · ') : '*'
}
