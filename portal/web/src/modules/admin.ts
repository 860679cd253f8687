import type { PageModule } from './types'

// The administration area's entry; its pages come from other modules (meta.admin, see lib/adminNav.ts).
const zh = { adminHome: { none: '没有可用的管理功能' } }
const en: typeof zh = { adminHome: { none: 'No administration pages for your roles' } }

export default {
  routes: [{ path: 'admin', name: 'admin', component: () => import('../views/admin/AdminHomeView.vue') }],
  messages: { zh, en },
} satisfies PageModule
