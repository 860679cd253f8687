// What the configuration pages pick from: departments, catalog items, regions and metrics, read
// once per page. Labels are built here so pickers and tables say the same thing.

import { get } from './api'

export interface Department {
  id: number
  name: string
  code: string
}
export interface CatalogItem {
  code: string
  sub_item: string | null
  main_item: string | null
}
export interface RegionNode {
  code: string
  name: string
  level: string
  children: RegionNode[]
}
export interface Metric {
  id: number
  key: string
  name_zh: string
  name_en: string
  unit: string | null
}

/** A region as picked: its code and its path of names (`浙江省 / 杭州市 / 西湖区`). */
export interface RegionOption {
  code: string
  name: string
  path: string
  depth: number
}

/** The tree, depth first, parents before children, each with its path of names. */
export function flattenRegions(tree: readonly RegionNode[], parent = '', depth = 0): RegionOption[] {
  const out: RegionOption[] = []
  for (const n of tree) {
    const path = parent ? `${parent} / ${n.name}` : n.name
    out.push({ code: n.code, name: n.name, path, depth })
    out.push(...flattenRegions(n.children ?? [], path, depth + 1))
  }
  return out
}

/** `demo-dust 扬尘在线监测超标` for a picker; the code alone when the item has no name. */
export function itemLabel(i: CatalogItem): string {
  const name = i.sub_item || i.main_item
  return name ? `${i.code} ${name}` : i.code
}

export const loadDepartments = async () => (await get<{ items: Department[] }>('/api/v1/departments')).items
export const loadCatalog = async () => (await get<{ items: CatalogItem[] }>('/api/v1/catalog')).items
export const loadRegions = async () => flattenRegions((await get<{ items: RegionNode[] }>('/api/v1/regions')).items)
export const loadMetrics = async () => (await get<{ items: Metric[] }>('/api/v1/metrics')).items
