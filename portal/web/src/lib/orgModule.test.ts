import { describe, expect, it } from 'vitest'
import org from '../modules/org'
import type { AdminPageMeta } from './adminNav'

// Looks a dotted key up in a message tree.
function lookup(messages: Record<string, unknown>, key: string): unknown {
  return key.split('.').reduce<unknown>((m, k) => (m as Record<string, unknown> | undefined)?.[k], messages)
}

describe('the org administration module', () => {
  const metas = org.routes.map((r) => r.meta?.admin as AdminPageMeta)
  it('declares six admin pages, ordered 10..60, the accounts page for the security administrator only', () => {
    expect(metas.map((m) => m.order)).toEqual([10, 20, 30, 40, 50, 60])
    expect(org.routes.find((r) => r.path === 'admin/users')?.meta?.admin).toMatchObject({ roles: ['security_admin'] })
    for (const m of metas.filter((m) => m.order !== 30)) expect(m.roles).toEqual(['system_admin'])
  })
  it('has every page title in both languages, under its own prefix', () => {
    expect(Object.keys(org.messages.zh)).toEqual(['org'])
    for (const m of metas) {
      expect(typeof lookup(org.messages.zh, m.title)).toBe('string')
      expect(typeof lookup(org.messages.en, m.title)).toBe('string')
    }
  })
})
