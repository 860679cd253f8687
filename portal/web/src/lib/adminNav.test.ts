import { describe, expect, it } from 'vitest'
import type { RouteRecordNormalized } from 'vue-router'
import { adminPages } from './adminNav'

const route = (path: string, meta: object) => ({ path, name: path, meta }) as unknown as RouteRecordNormalized

describe('administration pages', () => {
  const routes = [
    route('/admin/users', { admin: { title: 'u', order: 30, roles: ['security_admin'] } }),
    route('/admin/regions', { admin: { title: 'r', order: 10, roles: ['system_admin'] } }),
    route('/tasks', {}),
  ]
  it('lists the pages a role may open, in their order', () => {
    expect(adminPages(routes, ['system_admin']).map((p) => p.path)).toEqual(['/admin/regions'])
    expect(adminPages(routes, ['system_admin', 'security_admin']).map((p) => p.path)).toEqual([
      '/admin/regions',
      '/admin/users',
    ])
    expect(adminPages(routes, ['handler'])).toEqual([])
  })
})
