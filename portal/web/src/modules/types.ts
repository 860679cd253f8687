import type { RouteRecordRaw } from 'vue-router'

/** One area of the work portal: its routes (children of the logged-in layout) and its messages. */
export interface PageModule {
  routes: RouteRecordRaw[]
  messages: { zh: Record<string, unknown>; en: Record<string, unknown> }
}

/** Every module under src/modules, in file-name order. */
export function pageModules(): PageModule[] {
  const found = import.meta.glob<{ default: PageModule }>('./*.ts', { eager: true })
  return Object.keys(found)
    .filter((k) => k !== './types.ts')
    .sort()
    .map((k) => found[k].default)
}
