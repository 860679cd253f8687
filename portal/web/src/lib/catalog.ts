// The public regulatory item catalog (GET /api/public/v1/catalog): search text as sent, pages,
// and an item's details as the list of label/value pairs the page shows.

import { query } from './api'

/** A published catalog item as the public sees it (portal/src/routes/public_catalog.rs). */
export interface PublicCatalogItem {
  code: string
  version: number
  department: string
  main_item: string
  sub_item: string | null
  method: string
  measures: string | null
  object_type: string | null
  legal_basis: string | null
  process: string | null
  result: string | null
  level: string | null
  published_date: string | null
}

export const CATALOG_PATH = '/api/public/v1/catalog'
/** The server's largest page. */
export const CATALOG_PAGE_MAX = 100
/** The server cuts a search at this many characters; the page does too, so what is shown is what is searched. */
export const SEARCH_MAX = 100

/** A search as typed, made tidy: white space collapsed and trimmed, cut to the server's length. */
export function cleanSearch(raw: string): string {
  return [...raw.replace(/\s+/g, ' ').trim()].slice(0, SEARCH_MAX).join('')
}

/** The request for page `page` (from 1) of `size` items matching `search`. */
export function catalogPath(search: string, page: number, size: number): string {
  const limit = Math.min(Math.max(1, Math.floor(size)), CATALOG_PAGE_MAX)
  const offset = (Math.max(1, Math.floor(page)) - 1) * limit
  return `${CATALOG_PATH}${query({ q: cleanSearch(search), limit, offset: offset || null })}`
}

/** The fields shown in an item's details, in order; the label is an i18n key under `pubCatalog.field`. */
export const DETAIL_FIELDS = [
  'code',
  'department',
  'main_item',
  'sub_item',
  'method',
  'measures',
  'object_type',
  'legal_basis',
  'process',
  'result',
  'level',
  'version',
  'published_date',
] as const

export type DetailField = (typeof DETAIL_FIELDS)[number]

/** An item's details with the empty fields left out. */
export function itemDetails(item: PublicCatalogItem): { field: DetailField; value: string }[] {
  return DETAIL_FIELDS.map((field) => ({ field, value: item[field] === null || item[field] === undefined ? '' : String(item[field]).trim() })).filter(
    (d) => d.value !== '',
  )
}

/** The item's title: the main item, then the sub-item after a dash when there is one. */
export function itemTitle(item: Pick<PublicCatalogItem, 'main_item' | 'sub_item'>): string {
  return item.sub_item ? `${item.main_item} — ${item.sub_item}` : item.main_item
}
