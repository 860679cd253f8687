// A task's comments and attachments (portal/src/routes/tasks.rs): what may be uploaded, who may
// write, and feedback sent together with its files.

import { postForm, post } from './api'

/** One attachment, as the task detail lists it. */
export interface TaskAttachment {
  id: number
  task_id: number
  event_id: number | null
  filename: string
  content_type: string
  size: number
  sha256: string
  uploaded_by: string
  uploaded_at: string
}

/** The server's limit for one file. */
export const ATTACHMENT_MAX_BYTES = 20 * 1024 * 1024
/** What the server takes (it recognises the content; the names only guide the file picker). */
export const ATTACHMENT_EXTENSIONS = ['jpg', 'jpeg', 'png', 'pdf', 'docx', 'xlsx'] as const
export const ATTACHMENT_ACCEPT = ATTACHMENT_EXTENSIONS.map((e) => `.${e}`).join(',')
/** A comment is at most this many characters. */
export const COMMENT_MAX = 5000

export type AttachmentProblem = 'empty' | 'type' | 'size'

/** Why a chosen file cannot be uploaded, or null when it may go. */
export function attachmentProblem(f: { name: string; size: number }): AttachmentProblem | null {
  if (f.size === 0) return 'empty'
  const ext = f.name.includes('.') ? f.name.split('.').pop()!.toLowerCase() : ''
  if (!(ATTACHMENT_EXTENSIONS as readonly string[]).includes(ext)) return 'type'
  if (f.size > ATTACHMENT_MAX_BYTES) return 'size'
  return null
}


export const attachmentUrl = (taskId: number | string, id: number) => `/api/v1/tasks/${taskId}/attachments/${id}`

/** The upload form: one `file` field. */
export function attachmentForm(file: Blob, name: string): FormData {
  const form = new FormData()
  form.append('file', file, name)
  return form
}

/** Who writes on a task's timeline (comments, attachments): anyone who sees it except re-supervision. */
export function canWriteOnTask(roles: readonly string[]): boolean {
  return ['monitor', 'system_admin', 'handler', 'leader', 'reviewer'].some((r) => roles.includes(r))
}

/** A comment as sent (trimmed), or null when empty or too long. */
export function commentText(raw: string): string | null {
  const s = raw.trim()
  return s !== '' && [...s].length <= COMMENT_MAX ? s : null
}

export interface FeedbackSteps {
  upload: (file: File) => Promise<unknown>
  feedback: (text: string) => Promise<unknown>
}

/** The failure of one step of feedback with files: which file (null: the feedback itself) and why. */
export class FeedbackStepError extends Error {
  constructor(
    readonly file: string | null,
    readonly cause: unknown,
  ) {
    super(file ? `upload of ${file} failed` : 'feedback failed')
  }
}

/**
 * Feedback with attachments: each file is uploaded first, in order, and the feedback is sent only
 * when all are on the task, so a reviewer never sees feedback whose evidence is missing. A failed
 * upload stops there (files already uploaded stay attached to the task, listed on the page).
 */
export async function feedbackWithFiles(text: string, files: readonly File[], steps: FeedbackSteps): Promise<void> {
  for (const f of files) {
    try {
      await steps.upload(f)
    } catch (e) {
      throw new FeedbackStepError(f.name, e)
    }
  }
  try {
    await steps.feedback(text)
  } catch (e) {
    throw new FeedbackStepError(null, e)
  }
}

/** The real steps against the portal for task `taskId`. */
export function portalFeedbackSteps(taskId: number | string): FeedbackSteps {
  return {
    upload: (f) => postForm(`/api/v1/tasks/${taskId}/attachments`, attachmentForm(f, f.name)),
    feedback: (text) => post(`/api/v1/tasks/${taskId}/feedback`, { text }),
  }
}
