import type { RouteRecordNormalized } from 'vue-router'

/**
 * An administration page declares itself in its route's meta:
 * `meta: { admin: { title: 'org.regions.title', order: 10, roles: ['system_admin'] } }`
 * (`title` is an i18n key of its own module). The administration home and the side navigation list
 * every such page the user's roles allow; the server still checks every request.
 */
export interface AdminPageMeta {
  title: string
  order: number
  roles: readonly string[]
}

export interface AdminPage {
  path: string
  name: string
  meta: AdminPageMeta
}

export function adminPages(routes: readonly RouteRecordNormalized[], roles: readonly string[]): AdminPage[] {
  return routes
    .filter((r) => r.meta.admin && typeof r.name === 'string')
    .map((r) => ({ path: r.path, name: r.name as string, meta: r.meta.admin as AdminPageMeta }))
    .filter((p) => p.meta.roles.some((role) => roles.includes(role)))
    .sort((a, b) => a.meta.order - b.meta.order || a.path.localeCompare(b.path))
}
