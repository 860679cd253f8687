import { describe, expect, it } from 'vitest'
import { LOCALE_KEY, savedLocale } from './locale'

const store = (v: string | null) => ({ getItem: (k: string) => (k === LOCALE_KEY ? v : null) })

describe('saved locale', () => {
  it('is Chinese unless English was chosen', () => {
    expect(savedLocale(undefined)).toBe('zh-CN')
    expect(savedLocale(store(null))).toBe('zh-CN')
    expect(savedLocale(store('fr'))).toBe('zh-CN')
    expect(savedLocale(store('en'))).toBe('en')
  })
})
