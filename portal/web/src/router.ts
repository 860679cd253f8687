import { createRouter, createWebHistory } from 'vue-router'
import { loadSession } from './session'
import { homeFor } from './lib/roles'
import { pageModules } from './modules/types'

export const router = createRouter({
  history: createWebHistory(),
  routes: [
    // `/` is the login page without a session and sends a logged-in person to their home page.
    { path: '/', alias: '/login', name: 'login', component: () => import('./views/LoginView.vue') },
    {
      path: '/',
      component: () => import('./views/LayoutView.vue'),
      children: [
        { path: 'wall', name: 'wall', component: () => import('./views/WallView.vue') },
        { path: 'tasks', name: 'tasks', component: () => import('./views/TasksView.vue') },
        { path: 'tasks/:id(\\d+)', name: 'task', component: () => import('./views/TaskDetailView.vue'), props: true },
        { path: 'warnings/:id(\\d+)', name: 'warning', component: () => import('./views/WarningDetailView.vue'), props: true },
        { path: 'notifications', name: 'notifications', component: () => import('./views/NotificationsView.vue') },
        ...pageModules().flatMap((m) => m.routes),
      ],
    },
    // The public service portal: no session is asked for (meta.public is inherited by the children).
    {
      path: '/public',
      component: () => import('./views/public/PublicLayout.vue'),
      meta: { public: true },
      children: [
        { path: '', name: 'public-home', component: () => import('./views/public/PublicHomeView.vue') },
        { path: 'complaint', name: 'public-complaint', component: () => import('./views/public/PublicComplaintView.vue') },
        { path: 'track/:no?', name: 'public-track', component: () => import('./views/public/PublicTrackView.vue'), props: true },
      ],
    },
    { path: '/:rest(.*)*', name: 'not-found', component: () => import('./views/NotFoundView.vue'), meta: { public: true } },
  ],
})

router.beforeEach(async (to) => {
  if (to.meta.public) return true
  const user = await loadSession()
  if (to.name === 'login') {
    if (!user) return true
    const next = typeof to.query.next === 'string' && to.query.next.startsWith('/') ? to.query.next : null
    return { path: next ?? homeFor(user.roles), replace: true }
  }
  if (!user) return { name: 'login', query: { next: to.fullPath } }
  return true
})
