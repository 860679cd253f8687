// Departments' outbound notification channels (portal/src/routes/notifications.rs): a generic
// webhook (HMAC-signed with a secret), WeCom and DingTalk group robots (DingTalk optionally
// signed), or e-mail to a list of addresses. The secret is write-only: the server only says
// whether one is set, and a change sends it only when the administrator typed a new one or asked
// to remove it. Robot URLs come back with their keys masked, so a change sends the URL only when
// a new one was typed.

export type ChannelKind = 'webhook' | 'wecom' | 'dingtalk' | 'email'
export const CHANNEL_KINDS: readonly ChannelKind[] = ['webhook', 'wecom', 'dingtalk', 'email']

/** What a channel may subscribe to (the notification kinds, less the administrator's test). */
export const CHANNEL_EVENTS = [
  'new_task',
  'reminder',
  'supervision',
  'escalation',
  'returned',
  'transferred',
  'feedback_submitted',
  'rejected',
  'extension_requested',
  'extension_approved',
  'extension_refused',
  'closed',
  'red_warning',
  'warning_not_acknowledged',
] as const
export type ChannelEvent = (typeof CHANNEL_EVENTS)[number]
/** What a new channel gets when nobody chooses (the server's DEFAULT_CHANNEL_EVENTS). */
export const DEFAULT_EVENTS: readonly ChannelEvent[] = ['new_task', 'reminder', 'supervision', 'escalation', 'red_warning']

export interface Channel {
  id: number
  department_id: number
  kind: ChannelKind
  kind_name_zh: string
  name: string
  url: string | null
  secret_set: boolean
  recipients: string[]
  events: string[]
  enabled: boolean
  created_by: string | null
  created_at: string
  updated_at: string
}

export interface Delivery {
  id: number
  kind: string
  title_zh: string
  state: 'pending' | 'delivered' | 'failed'
  attempts: number
  next_attempt_at: string | null
  delivered_at: string | null
  failed_at: string | null
  last_status: number | null
  last_error: string | null
  created_at: string
  attempt_log: { attempt: number; at: string; ok: boolean; status: number | null; error: string | null }[]
}

export type SecretAction = 'keep' | 'set' | 'clear'

export interface ChannelForm {
  kind: ChannelKind
  name: string
  /** A new URL; empty on an existing channel keeps the stored one. */
  url: string
  recipients: string
  events: string[]
  enabled: boolean
  secretAction: SecretAction
  secret: string
}

export function emptyChannelForm(): ChannelForm {
  return { kind: 'webhook', name: '', url: '', recipients: '', events: [...DEFAULT_EVENTS], enabled: true, secretAction: 'keep', secret: '' }
}

/** The form for changing a channel: nothing secret in it, the URL left for a new one. */
export function channelForm(c: Channel): ChannelForm {
  return {
    kind: c.kind,
    name: c.name,
    url: '',
    recipients: c.recipients.join('\n'),
    events: [...c.events],
    enabled: c.enabled,
    secretAction: 'keep',
    secret: '',
  }
}

export const usesSecret = (k: ChannelKind) => k === 'webhook' || k === 'dingtalk'
export const usesUrl = (k: ChannelKind) => k !== 'email'

/** Addresses one per line or separated by commas or semicolons (either width), duplicates dropped. */
export function parseRecipients(s: string): string[] {
  const out: string[] = []
  for (const r of s.split(/[\s,;，；]+/)) {
    const a = r.trim()
    if (a && !out.includes(a)) out.push(a)
  }
  return out
}

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/
const URL_RE = /^https?:\/\/[^\s/?#]+[^\s]*$/i

export type ChannelField = 'name' | 'url' | 'recipients' | 'events' | 'secret'
export type ChannelCheck =
  | { ok: true; body: Record<string, unknown> }
  | { ok: false; errors: Partial<Record<ChannelField, string>> }

/**
 * The body to create (`existing` absent) or change a channel, or i18n keys of what is wrong. A
 * change sends every visible field except the URL and secret, which go only when given.
 */
export function channelBody(f: ChannelForm, existing?: Channel): ChannelCheck {
  const errors: Partial<Record<ChannelField, string>> = {}
  const body: Record<string, unknown> = { kind: f.kind, enabled: f.enabled }
  const name = f.name.trim()
  if (!name || [...name].length > 100) errors.name = 'cfg.channels.err.name'
  else body.name = name

  const kindChanged = existing !== undefined && existing.kind !== f.kind
  if (usesUrl(f.kind)) {
    const url = f.url.trim()
    // Switching from e-mail to a robot needs a URL, as does a new channel.
    const needed = existing === undefined || !usesUrl(existing.kind)
    if (url) {
      if (!URL_RE.test(url)) errors.url = 'cfg.channels.err.url'
      else body.url = url
    } else if (needed) errors.url = 'cfg.channels.err.urlRequired'
    if (kindChanged) body.recipients = []
  } else {
    const list = parseRecipients(f.recipients)
    if (list.length === 0 || list.length > 50) errors.recipients = 'cfg.channels.err.recipients'
    else if (!list.every((a) => EMAIL.test(a))) errors.recipients = 'cfg.channels.err.email'
    else body.recipients = list
  }

  if (f.events.length === 0) errors.events = 'cfg.channels.err.events'
  else body.events = [...f.events]

  if (usesSecret(f.kind)) {
    // A new channel has no secret to keep: whatever was typed is set.
    if (f.secretAction === 'set' || (!existing && f.secret !== '')) {
      const s = f.secret
      if (!s.trim() || [...s].length > 500) errors.secret = 'cfg.channels.err.secret'
      else body.secret = s
    } else if (f.secretAction === 'clear' && existing) body.secret = null
  }
  return Object.keys(errors).length ? { ok: false, errors } : { ok: true, body }
}

/** Element Plus tag type per delivery state. */
export function deliveryTag(state: string): 'info' | 'success' | 'danger' {
  return state === 'delivered' ? 'success' : state === 'failed' ? 'danger' : 'info'
}
