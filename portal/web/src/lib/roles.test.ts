import { describe, expect, it } from 'vitest'
import { homeFor, menuFor, taskActions } from './roles'

const keys = (roles: string[]) => menuFor(roles).map((m) => m.key)

describe('menu by role', () => {
  it('gives the monitoring center the wall first', () => {
    expect(keys(['monitor'])).toEqual(['wall', 'tasks', 'cases', 'devices', 'cameras', 'oversight', 'admin', 'notifications', 'account'])
    expect(homeFor(['monitor'])).toBe('/wall')
  })
  it('sends handlers to the task desk, without the wall', () => {
    expect(keys(['handler'])).toEqual(['tasks', 'cases', 'devices', 'notifications', 'account'])
    expect(homeFor(['handler'])).toBe('/tasks')
  })
  it('gives the auditor the audit trail and what every account has', () => {
    expect(keys(['audit_admin'])).toEqual(['audit', 'notifications', 'account'])
    expect(homeFor([])).toBe('/notifications')
  })
  it('merges several roles', () => {
    expect(keys(['handler', 'resupervision'])).toEqual(['wall', 'tasks', 'cases', 'devices', 'cameras', 'oversight', 'notifications', 'account'])
  })
})

describe('task actions', () => {
  it('follows the state machine for the department', () => {
    expect(taskActions('dispatched', ['handler'], false)).toEqual(['sign', 'return'])
    expect(taskActions('dispatched', ['leader'], false)).toEqual(['sign', 'return', 'transfer'])
    expect(taskActions('signed', ['handler'], false)).toEqual(['start'])
    expect(taskActions('in_progress', ['handler'], false)).toEqual(['extension', 'feedback'])
    expect(taskActions('in_progress', ['handler'], true)).toEqual(['feedback'])
    expect(taskActions('feedback', ['handler'], false)).toEqual([])
  })
  it('lets the reviewer decide feedback only', () => {
    expect(taskActions('feedback', ['reviewer'], false)).toEqual(['approve', 'reject'])
    expect(taskActions('dispatched', ['reviewer'], false)).toEqual([])
    expect(taskActions('closed', ['reviewer', 'handler'], false)).toEqual([])
  })
})
