// Which form field a refused request was about, so the message shows next to that field.
//
// The portal names the field at the start of a 400's messages: `credit_code: …` / `credit_code：…`
// (store FieldErrors, portal/src/error.rs, and the routes' own checks), or, when the JSON body
// could not be read into its type (code `invalid`), inside serde's text:
// `invalid request body: Failed to deserialize …: credit_code: … at line 1 column 60`.
import { ApiError } from './api'

export interface FieldProblem {
  field: string
  message: string
}

const PREFIX = /^([A-Za-z_][A-Za-z0-9_]*)\s*[:：]\s*([\s\S]+)$/
const SERDE = /:\s*([A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])?)\s*:\s*([\s\S]+?)(?: at line \d+ column \d+)?$/

function split(text: string, fields: readonly string[]): FieldProblem | null {
  const m = PREFIX.exec(text.trim())
  if (m && fields.includes(m[1])) return { field: m[1], message: m[2].trim() }
  const s = SERDE.exec(text.trim())
  if (s) {
    const field = s[1].replace(/\[\d+\]$/, '')
    if (fields.includes(field)) return { field, message: s[2].trim() }
  }
  return null
}

/**
 * The field of `fields` that a 400 answer names, with its message in the UI's language (the
 * other language when that one names no field); `null` for any other error, which the page
 * shows as a whole.
 */
export function fieldProblem(e: unknown, fields: readonly string[], locale: string): FieldProblem | null {
  if (!(e instanceof ApiError) || e.status !== 400) return null
  const [first, second] = locale === 'en' ? [e.messageEn, e.messageZh] : [e.messageZh, e.messageEn]
  const a = first ? split(first, fields) : null
  if (a) return a
  const b = second ? split(second, fields) : null
  // The other language names the field: keep this language's full text as the message.
  return b && first ? { field: b.field, message: first } : b
}
