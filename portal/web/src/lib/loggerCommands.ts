// HJ 212 logger commands on the device page: clock sync (CN 1012) and the real-time data interval
// (CN 1062), and their history with the logger's 9011/9012 answers as the gateway recorded them.

/** The gateway's record of the answers: 9011's QnRtn, and 9012's ExeRtn once executed. */
export interface LoggerReplies {
  qn?: string
  qn_rtn?: number
  exe_rtn?: number
}

export interface LoggerCommand {
  id: string
  kind: string
  body: { seconds?: number } & Record<string, unknown>
  created_by: string | null
  created_at: string
  acked_at: string | null
  ok: boolean | null
  error: string | null
  state: LoggerReplies | null
}

/** `GET /api/v1/devices/{id}/commands`: `hj212_mn` is null for devices that are no logger. */
export interface CommandHistory {
  hj212_mn: string | null
  items: LoggerCommand[]
}

/** The standard's bounds of the real-time interval, in seconds. */
export const INTERVAL_MIN = 30
export const INTERVAL_MAX = 3600

/** Whether `seconds` may be sent as a 1062 (a whole number within the standard's bounds). */
export function intervalOk(seconds: number | null | undefined): seconds is number {
  return typeof seconds === 'number' && Number.isInteger(seconds) && seconds >= INTERVAL_MIN && seconds <= INTERVAL_MAX
}

export type CommandState = 'pending' | 'done' | 'refused'

/** Unanswered, carried out, or refused / failed (the logger's answer or the gateway's verdict). */
export function commandState(c: LoggerCommand): CommandState {
  if (c.acked_at === null || c.ok === null) return 'pending'
  return c.ok ? 'done' : 'refused'
}

/** The i18n key and parameters of what the command asked. */
export function commandAction(c: LoggerCommand): { key: 'syncClock' | 'setInterval' | 'other'; seconds?: number } {
  if (c.kind === 'sync_clock') return { key: 'syncClock' }
  if (c.kind === 'set_interval' && typeof c.body?.seconds === 'number') return { key: 'setInterval', seconds: c.body.seconds }
  return { key: 'other' }
}

/** The answers as the standard names them, e.g. `9011 QnRtn=1 · 9012 ExeRtn=1`; empty when none. */
export function replyText(state: LoggerReplies | null): string {
  if (!state) return ''
  const parts: string[] = []
  if (typeof state.qn_rtn === 'number') parts.push(`9011 QnRtn=${state.qn_rtn}`)
  if (typeof state.exe_rtn === 'number') parts.push(`9012 ExeRtn=${state.exe_rtn}`)
  return parts.join(' · ')
}

/**
 * The `hj212` part of a registration from the form's MN and PW (as the platform checks them): the
 * MN 1-64 of A-Z a-z 0-9 _ -, the PW 1-64 printable ASCII characters other than the packet's
 * separators ; , = &.
 */
export function loggerLogin(form: { mn: string; pw: string }):
  | { ok: true; hj212: { mn: string; pw: string } }
  | { ok: false; field: 'mn' | 'pw' } {
  const mn = form.mn.trim()
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(mn)) return { ok: false, field: 'mn' }
  if (!/^[!-~]{1,64}$/.test(form.pw) || /[;,=&]/.test(form.pw)) return { ok: false, field: 'pw' }
  return { ok: true, hj212: { mn, pw: form.pw } }
}
