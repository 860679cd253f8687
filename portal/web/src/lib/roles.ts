// What each role finds in the menu. The server decides what a role may do and see; the menu only
// leaves out pages that would answer 403 for everything in them.

export type Role =
  | 'system_admin'
  | 'security_admin'
  | 'audit_admin'
  | 'monitor'
  | 'handler'
  | 'leader'
  | 'reviewer'
  | 'resupervision'

export interface MenuEntry {
  /** Route name (router.ts) and i18n key `menu.<key>`. */
  key: 'wall' | 'tasks' | 'cases' | 'devices' | 'cameras' | 'oversight' | 'admin' | 'audit' | 'account' | 'notifications'
  path: string
  roles: readonly Role[] | 'all'
}

export const MENU: readonly MenuEntry[] = [
  { key: 'wall', path: '/wall', roles: ['monitor', 'system_admin', 'leader', 'resupervision'] },
  {
    key: 'tasks',
    path: '/tasks',
    roles: ['monitor', 'system_admin', 'handler', 'leader', 'reviewer', 'resupervision'],
  },
  { key: 'cases', path: '/cases', roles: ['monitor', 'system_admin', 'handler', 'leader', 'reviewer', 'resupervision'] },
  { key: 'devices', path: '/devices', roles: ['monitor', 'system_admin', 'handler', 'leader', 'reviewer', 'resupervision'] },
  { key: 'cameras', path: '/cameras', roles: ['monitor', 'system_admin', 'leader', 'resupervision'] },
  // Re-supervision (督查督办): how departments respond.
  { key: 'oversight', path: '/oversight', roles: ['resupervision', 'leader', 'monitor', 'system_admin'] },
  // The monitoring center finds its silences there (the other administration pages are not theirs).
  { key: 'admin', path: '/admin', roles: ['system_admin', 'security_admin', 'monitor'] },
  { key: 'audit', path: '/audit', roles: ['audit_admin'] },
  { key: 'notifications', path: '/notifications', roles: 'all' },
  { key: 'account', path: '/account', roles: 'all' },
]

export function menuFor(roles: readonly string[]): MenuEntry[] {
  return MENU.filter((m) => m.roles === 'all' || m.roles.some((r) => roles.includes(r)))
}

/** Where a person lands after logging in: the wall for the monitoring center, else the task desk. */
export function homeFor(roles: readonly string[]): string {
  return menuFor(roles)[0]?.path ?? '/notifications'
}

export type TaskAction =
  | 'sign'
  | 'start'
  | 'return'
  | 'transfer'
  | 'extension'
  | 'feedback'
  | 'approve'
  | 'reject'

/**
 * The actions offered on a task in a given state to someone with these roles (the state machine in
 * store/src/tasks and the rights in portal/src/routes/tasks.rs): the department signs for, returns,
 * starts, asks for more time and feeds back; a leader or the dispatchers transfer; the reviewer
 * (or the dispatchers without a reviewing department) approves or rejects feedback. The server
 * re-checks every one; this only hides buttons that cannot work.
 */
export function taskActions(state: string, roles: readonly string[], extensionPending: boolean): TaskAction[] {
  const has = (...rs: Role[]) => rs.some((r) => roles.includes(r))
  const dept = has('handler', 'leader')
  const out: TaskAction[] = []
  if (dept && state === 'dispatched') out.push('sign', 'return')
  if (dept && state === 'signed') out.push('start')
  if ((state === 'dispatched' || state === 'signed') && has('leader', 'monitor', 'system_admin')) out.push('transfer')
  if (dept && state === 'in_progress') {
    if (!extensionPending) out.push('extension')
    out.push('feedback')
  }
  if (state === 'feedback' && has('reviewer', 'leader', 'monitor', 'system_admin')) out.push('approve', 'reject')
  return out
}
