// Enforcement cases: the five stages in order, who may move a case on, and what each step asks for
// (portal/src/routes/cases.rs; the rules themselves are the store's, which re-checks everything).

export const CASE_STAGES = ['filed', 'investigating', 'decided', 'executing', 'closed'] as const
export type CaseStage = (typeof CASE_STAGES)[number]

export const PENALTIES = ['warning', 'fine', 'confiscation', 'suspension', 'revocation', 'none'] as const
export type Penalty = (typeof PENALTIES)[number]

export interface CaseDocument {
  id: number
  stage: CaseStage
  stage_zh: string
  filename: string
  content_type: string
  size: number
  uploaded_by: string
  uploaded_at: string
  url: string
}

export interface CaseDecision {
  legal_basis: string
  penalty: Penalty
  penalty_zh: string
  amount_yuan: string | number
  disclose: boolean
  decided_at: string
  decision_date: string
  credit_severity: string | null
  credit_severity_zh: string | null
}

export interface CaseStageRecord {
  stage: CaseStage
  stage_zh: string
  reached_at: string
  handler: string
  note: string | null
  documents: CaseDocument[]
}

export interface Case {
  id: number
  case_no: string
  task_id: number
  task_no: string
  task_title: string
  object_id: string
  object_name: string
  credit_code: string | null
  item: string | null
  department_id: number
  department_name: string
  stage: CaseStage
  stage_zh: string
  next_stage: CaseStage | null
  opened_at: string
  opened_by: string
  updated_at: string
  closed_at: string | null
  decision: CaseDecision | null
  stages?: CaseStageRecord[]
  documents?: CaseDocument[]
}

export interface CreditRecord {
  id: number
  source: string
  case_no: string | null
  severity: string
  severity_zh: string
  deduction: number
  note: string | null
  recorded_at: string
  expires_at: string
  in_force: boolean
}

export interface Credit {
  object_id: string
  credit_class: string
  credit_class_zh: string
  credit_points: number
  records_in_force: number
  records: CreditRecord[]
}

/** The el-steps index: the current stage's position; past the last one once closed. */
export function stepIndex(stage: string): number {
  const i = CASE_STAGES.indexOf(stage as CaseStage)
  if (i < 0) return 0
  return stage === 'closed' ? CASE_STAGES.length : i
}

/** Who may move a case on or add documents: the system administrator and a department's people. */
export function mayWorkOnCases(roles: readonly string[]): boolean {
  return ['system_admin', 'handler', 'leader'].some((r) => roles.includes(r))
}

export interface AdvanceForm {
  note: string
  penalty: Penalty | ''
  amount_yuan: string
  legal_basis: string
  disclose: boolean
}

export type AdvanceBody = {
  stage: CaseStage
  note?: string
  penalty?: Penalty
  amount_yuan?: string
  legal_basis?: string
  disclose?: boolean
}

/** Amounts in yuan as the API takes them: a positive number with at most two decimals. */
const AMOUNT = /^(0|[1-9]\d{0,11})(\.\d{1,2})?$/

/**
 * The body that moves a case to `to`. Only the decision stage carries a decision: a penalty, for a
 * fine a positive amount (no amount for anything else), the legal basis when given (the catalog
 * item's otherwise) and whether to disclose it. Returns the field at fault instead when one is.
 */
export function advanceBody(
  to: CaseStage,
  f: AdvanceForm,
): { ok: true; body: AdvanceBody } | { ok: false; field: 'penalty' | 'amount_yuan' | 'note' } {
  const body: AdvanceBody = { stage: to }
  const note = f.note.trim()
  if ([...note].length > 5000) return { ok: false, field: 'note' }
  if (note) body.note = note
  if (to !== 'decided') return { ok: true, body }
  if (!f.penalty) return { ok: false, field: 'penalty' }
  body.penalty = f.penalty
  if (f.penalty === 'fine') {
    const a = f.amount_yuan.trim()
    if (!AMOUNT.test(a) || Number(a) <= 0) return { ok: false, field: 'amount_yuan' }
    body.amount_yuan = a
  }
  if (f.legal_basis.trim()) body.legal_basis = f.legal_basis.trim()
  body.disclose = f.disclose
  return { ok: true, body }
}

