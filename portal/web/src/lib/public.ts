// The public service portal's logic, kept apart from the pages so it can be tested: tracking
// numbers, the complaint form as multipart, and the complaint service list.

/** `TS` + the filing date (YYYYMMDD) + ten upper-case letters or digits (portal/src/routes/complaints.rs). */
export const TRACKING_NO = /^TS[0-9]{8}[0-9A-Z]{10}$/

/**
 * A tracking number as a person may type it (spaces, lower case) made canonical, or `null` when
 * it cannot be one: the page then says so instead of asking the server.
 */
export function parseTrackingNo(input: string): string | null {
  const s = input.replace(/\s+/g, '').toUpperCase()
  return TRACKING_NO.test(s) ? s : null
}

/** What the complaint form holds; empty optional fields are not sent. */
export interface ComplaintDraft {
  service_code: string
  description: string
  address?: string
  contact_name?: string
  phone?: string
  object_id?: string
  captcha_id: string
  captcha_answer: string
}

const FIELDS: readonly (keyof ComplaintDraft)[] = [
  'service_code',
  'description',
  'address',
  'contact_name',
  'phone',
  'object_id',
  'captcha_id',
  'captcha_answer',
]

/** At most this many attachments (the server's limit; it refuses more). */
export const MAX_ATTACHMENTS = 3

/**
 * The multipart body `POST /api/v1/complaints` reads: text fields trimmed, blank optional ones
 * left out so the server never sees an empty value, files under `attachments`.
 */
export function complaintFormData(draft: ComplaintDraft, files: readonly Blob[] = []): FormData {
  const form = new FormData()
  for (const name of FIELDS) {
    const v = (draft[name] ?? '').trim()
    if (v !== '') form.append(name, v)
  }
  for (const f of files.slice(0, MAX_ATTACHMENTS)) {
    form.append('attachments', f, f instanceof File ? f.name : 'attachment')
  }
  return form
}

/**
 * Which required fields are missing, by form field name; empty when the form may be sent. The
 * CAPTCHA answer is required unless the server said the CAPTCHA is off.
 */
export function missingFields(draft: ComplaintDraft, captchaRequired = true): (keyof ComplaintDraft)[] {
  const required: (keyof ComplaintDraft)[] = ['service_code', 'description']
  if (captchaRequired) required.push('captcha_answer')
  return required.filter((k) => (draft[k] ?? '').trim() === '')
}

/** `GET /api/v1/complaints/captcha`: an image to solve, or `required: false` when it is turned off. */
export interface CaptchaAnswer {
  required?: boolean
  id?: string
  image?: string
}

/** Whether the form must show a CAPTCHA (servers that predate the switch always send one). */
export function captchaRequired(c: CaptchaAnswer): boolean {
  return c.required !== false
}

export interface ComplaintService {
  service_code: string
  service_name: string
  service_name_zh: string
  description: string
  group: string
}

/** A service's name in the page's language, falling back to the other one. */
export function serviceName(s: Pick<ComplaintService, 'service_name' | 'service_name_zh'>, locale: string): string {
  return (locale === 'en' ? s.service_name || s.service_name_zh : s.service_name_zh || s.service_name) ?? ''
}
