// The registers' administration (regions, departments, regulated objects, the item catalog,
// imports): shapes of the API (portal/src/routes/registers.rs, store/src/registers/), the checks a
// form can make before the server makes them again, and the request bodies.
import { creditCodeMessage, creditCodeProblem } from './creditCode'
import { query } from './api'

/** A translator (vue-i18n's `t`), so checks can name problems in the UI's language. */
export type Translate = (key: string, params?: Record<string, unknown>) => string

/** Problems by form field; empty when the form may be sent. */
export type FormProblems = Record<string, string>

function tooLong(v: string, max: number): boolean {
  return [...v.trim()].length > max
}

// --- regions (行政区划) ---

export type RegionLevel = 'province' | 'city' | 'county'
export const REGION_LEVELS: readonly RegionLevel[] = ['province', 'city', 'county']

export interface Region {
  code: string
  name: string
  parent_code: string | null
  level: RegionLevel
}

export interface RegionNode extends Region {
  children: RegionNode[]
}

/** A 6-digit administrative division code (GB/T 2260). */
export const REGION_CODE = /^[0-9]{6}$/

/** The level a division code's shape suggests: `330000` a province, `330100` a city, else a county. */
export function levelOfCode(code: string): RegionLevel | null {
  if (!REGION_CODE.test(code)) return null
  if (code.endsWith('0000')) return 'province'
  if (code.endsWith('00')) return 'city'
  return 'county'
}

/** The parent a division code's shape suggests (`330106` -> `330100`, `330100` -> `330000`). */
export function parentOfCode(code: string): string | null {
  switch (levelOfCode(code)) {
    case 'city':
      return `${code.slice(0, 2)}0000`
    case 'county':
      return `${code.slice(0, 4)}00`
    default:
      return null
  }
}

/** Every region of a tree, parents before children, with its depth (for indented pickers). */
export function flattenRegions(tree: readonly RegionNode[], depth = 0): { region: Region; depth: number }[] {
  return tree.flatMap((n) => [
    { region: { code: n.code, name: n.name, parent_code: n.parent_code, level: n.level }, depth },
    ...flattenRegions(n.children ?? [], depth + 1),
  ])
}

/** Region code -> name. */
export function regionNames(tree: readonly RegionNode[]): Map<string, string> {
  return new Map(flattenRegions(tree).map(({ region }) => [region.code, region.name]))
}

/** Who may be the parent of a region of `level`: regions of a higher level, other than itself. */
export function parentChoices(all: readonly Region[], level: RegionLevel, self?: string): Region[] {
  const rank = REGION_LEVELS.indexOf(level)
  return all.filter((r) => REGION_LEVELS.indexOf(r.level) < rank && r.code !== self)
}

export interface RegionForm {
  code: string
  name: string
  level: RegionLevel | ''
  parent_code: string
}

export function validateRegion(f: RegionForm, t: Translate): FormProblems {
  const p: FormProblems = {}
  if (!REGION_CODE.test(f.code.trim())) p.code = t('org.v.regionCode')
  if (!f.name.trim()) p.name = t('org.v.required')
  else if (tooLong(f.name, 100)) p.name = t('org.v.tooLong', { max: 100 })
  if (!f.level) p.level = t('org.v.required')
  if (f.parent_code) {
    if (f.level === 'province') p.parent_code = t('org.v.provinceNoParent')
    else if (f.parent_code === f.code.trim()) p.parent_code = t('org.v.selfParent')
  }
  return p
}

export function regionBody(f: RegionForm): Region {
  return {
    code: f.code.trim(),
    name: f.name.trim(),
    level: f.level as RegionLevel,
    parent_code: f.parent_code ? f.parent_code : null,
  }
}

// --- departments (部门) ---

export interface Department {
  id: number
  code: string
  name: string
  parent_id: number | null
  created_at: string
  region_codes: string[]
}

export interface DepartmentNode extends Department {
  children: DepartmentNode[]
}

/** Departments as a tree by `parent_id`, in the given order; one whose parent is unknown is a root. */
export function departmentTree(list: readonly Department[]): DepartmentNode[] {
  const nodes = new Map<number, DepartmentNode>(list.map((d) => [d.id, { ...d, children: [] }]))
  const roots: DepartmentNode[] = []
  for (const d of list) {
    const node = nodes.get(d.id) as DepartmentNode
    const parent = d.parent_id !== null ? nodes.get(d.parent_id) : undefined
    if (parent && parent !== node) parent.children.push(node)
    else roots.push(node)
  }
  return roots
}

/** A department or other code: `[A-Za-z0-9_.-]{1,64}`. */
export const DEPARTMENT_CODE = /^[A-Za-z0-9_.-]{1,64}$/

export interface DepartmentForm {
  code: string
  name: string
  parent_id: number | null
}

export function validateDepartment(f: DepartmentForm, t: Translate): FormProblems {
  const p: FormProblems = {}
  if (!DEPARTMENT_CODE.test(f.code.trim())) p.code = t('org.v.code', { max: 64 })
  if (!f.name.trim()) p.name = t('org.v.required')
  else if (tooLong(f.name, 200)) p.name = t('org.v.tooLong', { max: 200 })
  return p
}

export function departmentBody(f: DepartmentForm): { code: string; name: string; parent_id: number | null } {
  return { code: f.code.trim(), name: f.name.trim(), parent_id: f.parent_id ?? null }
}

// --- regulated objects (监管对象) ---

export interface ObjectRecord {
  id: string
  name: string
  credit_code: string | null
  type: string | null
  address: string | null
  lon: number | null
  lat: number | null
  region_code: string | null
  region_name: string | null
  department_id: number | null
  department_code: string | null
  department_name: string | null
  device_count: number
  created_at: string
  updated_at: string
  credit_class?: string | null
  credit_points?: number | null
}

/** The object form: text as typed (coordinates too), the department by id. */
export interface ObjectForm {
  id: string
  name: string
  credit_code: string
  type: string
  address: string
  lon: string
  lat: string
  region_code: string
  department_id: number | null
}

/** An object's id: `[A-Za-z0-9_-]{1,64}` (no dot: it appears in device topics' metadata). */
export const OBJECT_ID = /^[A-Za-z0-9_-]{1,64}$/

export function emptyObjectForm(): ObjectForm {
  return { id: '', name: '', credit_code: '', type: '', address: '', lon: '', lat: '', region_code: '', department_id: null }
}

export function objectFormOf(o: ObjectRecord): ObjectForm {
  return {
    id: o.id,
    name: o.name,
    credit_code: o.credit_code ?? '',
    type: o.type ?? '',
    address: o.address ?? '',
    lon: o.lon === null || o.lon === undefined ? '' : String(o.lon),
    lat: o.lat === null || o.lat === undefined ? '' : String(o.lat),
    region_code: o.region_code ?? '',
    department_id: o.department_id ?? null,
  }
}

/** A coordinate as typed: `null` when blank, `NaN` when not a number. */
export function parseCoordinate(s: string): number | null {
  const v = s.trim()
  if (!v) return null
  return /^[-+]?(\d+(\.\d*)?|\.\d+)$/.test(v) ? Number(v) : Number.NaN
}

export function validateObject(f: ObjectForm, t: Translate, locale: string): FormProblems {
  const p: FormProblems = {}
  if (!OBJECT_ID.test(f.id.trim())) p.id = t('org.v.objectId')
  if (!f.name.trim()) p.name = t('org.v.required')
  else if (tooLong(f.name, 200)) p.name = t('org.v.tooLong', { max: 200 })
  if (f.credit_code.trim()) {
    const c = creditCodeProblem(f.credit_code)
    if (c) p.credit_code = creditCodeMessage(c, locale)
  }
  if (tooLong(f.type, 64)) p.type = t('org.v.tooLong', { max: 64 })
  if (tooLong(f.address, 500)) p.address = t('org.v.tooLong', { max: 500 })
  if (f.region_code && !REGION_CODE.test(f.region_code)) p.region_code = t('org.v.regionCode')
  const lon = parseCoordinate(f.lon)
  const lat = parseCoordinate(f.lat)
  if (lon !== null && !(lon >= -180 && lon <= 180)) p.lon = t('org.v.range', { min: -180, max: 180 })
  if (lat !== null && !(lat >= -90 && lat <= 90)) p.lat = t('org.v.range', { min: -90, max: 90 })
  if (lon !== null && lat === null && !p.lon) p.lat = t('org.v.pair')
  if (lat !== null && lon === null && !p.lat) p.lon = t('org.v.pair')
  return p
}

/** The body of `POST /api/v1/objects` and `PUT /api/v1/objects/{id}`: blank optional fields as null. */
export function objectBody(f: ObjectForm): Record<string, string | number | null> {
  const opt = (s: string) => (s.trim() ? s.trim() : null)
  return {
    id: f.id.trim(),
    name: f.name.trim(),
    credit_code: opt(f.credit_code),
    type: opt(f.type),
    address: opt(f.address),
    lon: parseCoordinate(f.lon),
    lat: parseCoordinate(f.lat),
    region_code: opt(f.region_code),
    department_id: f.department_id ?? null,
  }
}

// --- the regulatory item catalog (监管事项目录) ---

export type CatalogStatus = 'draft' | 'published'

/** The ten fields of an item, in the order the form and the export show them. */
export const CATALOG_FIELDS = [
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
] as const
export type CatalogField = (typeof CATALOG_FIELDS)[number]
export const CATALOG_REQUIRED: readonly CatalogField[] = ['department', 'main_item', 'method']
const CATALOG_MAX: Partial<Record<CatalogField, number>> = { department: 200, main_item: 500, method: 200 }

export type CatalogFields = Record<CatalogField, string | null>

export interface CatalogItem extends CatalogFields {
  code: string
  version: number
  status: CatalogStatus
  created_at: string
  created_by: string | null
  published_at: string | null
  published_by: string | null
}

export type CatalogForm = { code: string } & Record<CatalogField, string>

export function catalogFormOf(code: string, item?: Partial<CatalogFields> | null): CatalogForm {
  const f = { code } as CatalogForm
  for (const k of CATALOG_FIELDS) f[k] = item?.[k] ?? ''
  return f
}

export function validateCatalog(f: CatalogForm, t: Translate): FormProblems {
  const p: FormProblems = {}
  if (!DEPARTMENT_CODE.test(f.code.trim())) p.code = t('org.v.code', { max: 64 })
  for (const k of CATALOG_FIELDS) {
    const v = f[k] ?? ''
    const max = CATALOG_MAX[k] ?? 10_000
    if (CATALOG_REQUIRED.includes(k) && !v.trim()) p[k] = t('org.v.required')
    else if (tooLong(v, max)) p[k] = t('org.v.tooLong', { max })
  }
  return p
}

/** The body of `PUT /api/v1/catalog/{code}/draft`: the ten fields, blank optional ones as null. */
export function catalogBody(f: CatalogForm): CatalogFields {
  const out = {} as CatalogFields
  for (const k of CATALOG_FIELDS) {
    const v = (f[k] ?? '').trim()
    out[k] = CATALOG_REQUIRED.includes(k) ? v : v || null
  }
  return out
}

/** The pending draft in a code's history (newest first), if there is one. */
export function draftOf(history: readonly CatalogItem[]): CatalogItem | null {
  const d = history.find((v) => v.status === 'draft')
  return d ?? null
}

/** The fields whose values differ between two versions (to show what a draft changes). */
export function changedFields(a: Partial<CatalogFields> | null, b: Partial<CatalogFields> | null): CatalogField[] {
  return CATALOG_FIELDS.filter((k) => (a?.[k] ?? null) !== (b?.[k] ?? null))
}

// --- imports and exports ---

/** One problem with one row of an imported file; the header is row 1. */
export interface RowError {
  row: number
  field: string
  message_en: string
  message_zh: string
}

/** What an import did or, dry, would do (objects and catalog: all counts; devices: `updated`). */
export interface ImportReport {
  inserted?: number
  updated: number
  unchanged?: number
  skipped?: number
  errors: RowError[]
  dry_run?: boolean
}

/** The row error's message in the UI's language, falling back to the other one. */
export function rowErrorMessage(e: RowError, locale: string): string {
  return (locale === 'en' ? e.message_en || e.message_zh : e.message_zh || e.message_en) ?? ''
}

/** The distinct data rows (not the header) that the report refuses. */
export function refusedRows(r: ImportReport): number {
  return new Set(r.errors.filter((e) => e.row > 1).map((e) => e.row)).size
}

/** The import URL with its options. */
export function importPath(base: string, opts: { dryRun?: boolean; publish?: boolean }): string {
  return `${base}${query({ dry_run: opts.dryRun ? true : null, publish: opts.publish ? true : null })}`
}

/** The export URL for a format (`csv` is the server's default). */
export function exportPath(base: string, format: 'csv' | 'xlsx'): string {
  return `${base}${query({ format: format === 'csv' ? null : format })}`
}

/** What the file picker offers. */
export const IMPORT_ACCEPT = '.csv,.xlsx,text/csv,application/vnd.openxmlformats-officedocument.spreadsheetml.sheet'

/** The portal refuses request bodies over 1 MiB (portal/src/lib.rs BODY_LIMIT_BYTES). */
export const IMPORT_MAX_BYTES = 1024 * 1024

/** Why a chosen file cannot be imported, or `null`: only CSV or XLSX, at most 1 MiB. */
export function importFileProblem(file: { name: string; size: number }): 'type' | 'size' | 'empty' | null {
  if (!/\.(csv|xlsx)$/i.test(file.name)) return 'type'
  if (file.size === 0) return 'empty'
  if (file.size > IMPORT_MAX_BYTES) return 'size'
  return null
}
