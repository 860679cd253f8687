import { describe, expect, it } from 'vitest'
import { catalogPath, cleanSearch, itemDetails, itemTitle, SEARCH_MAX, type PublicCatalogItem } from './catalog'

const item: PublicCatalogItem = {
  code: 'ENV-001',
  version: 2,
  department: '市生态环境局',
  main_item: '大气污染防治监管',
  sub_item: null,
  method: '非现场监管',
  measures: '  ',
  object_type: '建筑工地',
  legal_basis: '《大气污染防治法》',
  process: null,
  result: null,
  level: '市级',
  published_date: '2026-05-01',
}

describe('catalog search', () => {
  it('sends tidy text, pages and no empty parameters', () => {
    expect(catalogPath('', 1, 20)).toBe('/api/public/v1/catalog?limit=20')
    expect(catalogPath('  扬尘   工地 ', 3, 20)).toBe(`/api/public/v1/catalog?${new URLSearchParams({ q: '扬尘 工地' })}&limit=20&offset=40`)
    expect(catalogPath('x', 2, 500)).toBe('/api/public/v1/catalog?q=x&limit=100&offset=100')
    expect(catalogPath('x', 0, 0)).toBe('/api/public/v1/catalog?q=x&limit=1')
  })

  it('cuts long searches by characters, as the server does', () => {
    expect([...cleanSearch('字'.repeat(SEARCH_MAX + 20))].length).toBe(SEARCH_MAX)
  })
})

describe('catalog items', () => {
  it('show their filled fields in order', () => {
    expect(itemDetails(item).map((d) => d.field)).toEqual([
      'code',
      'department',
      'main_item',
      'method',
      'object_type',
      'legal_basis',
      'level',
      'version',
      'published_date',
    ])
    expect(itemDetails(item).find((d) => d.field === 'version')?.value).toBe('2')
  })

  it('are titled by main and sub item', () => {
    expect(itemTitle(item)).toBe('大气污染防治监管')
    expect(itemTitle({ main_item: '大气', sub_item: '扬尘' })).toBe('大气 — 扬尘')
  })
})
