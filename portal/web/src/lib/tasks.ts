import type { TaskAttachment } from './attachments'

export interface Task {
  id: number
  task_no: string
  title: string
  description: string
  level: number
  level_name_zh: string
  state: string
  state_name_zh: string
  source_name_zh: string
  department_id: number
  department_name: string
  dispatched_at: string
  due: string | null
  overdue: boolean
  extension_pending: boolean
}

export interface TaskEvent {
  id: number
  at: string
  actor: string
  action: string
  from_state: string | null
  to_state: string | null
  reason: string | null
  detail: unknown
}

export interface TaskDetail extends Task {
  events: TaskEvent[]
  attachments: TaskAttachment[]
}

export const TASK_STATES = ['dispatched', 'signed', 'in_progress', 'feedback', 'returned', 'closed', 'archived'] as const
