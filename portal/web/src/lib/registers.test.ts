import { describe, expect, it } from 'vitest'
import {
  catalogBody,
  catalogFormOf,
  changedFields,
  departmentTree,
  draftOf,
  emptyObjectForm,
  exportPath,
  flattenRegions,
  importFileProblem,
  importPath,
  levelOfCode,
  objectBody,
  objectFormOf,
  parentChoices,
  parentOfCode,
  parseCoordinate,
  refusedRows,
  regionBody,
  regionNames,
  rowErrorMessage,
  validateCatalog,
  validateDepartment,
  validateObject,
  validateRegion,
  type CatalogItem,
  type Department,
  type ObjectRecord,
  type RegionNode,
} from './registers'

// Problems come back as the i18n key (and parameters), so tests see which check fired.
const t = (key: string, params?: Record<string, unknown>) => (params ? `${key} ${JSON.stringify(params)}` : key)

const TREE: RegionNode[] = [
  {
    code: '330000',
    name: '浙江省',
    parent_code: null,
    level: 'province',
    children: [
      {
        code: '330100',
        name: '杭州市',
        parent_code: '330000',
        level: 'city',
        children: [{ code: '330106', name: '西湖区', parent_code: '330100', level: 'county', children: [] }],
      },
    ],
  },
]

describe('regions', () => {
  it('reads level and parent from the code', () => {
    expect(levelOfCode('330000')).toBe('province')
    expect(levelOfCode('330100')).toBe('city')
    expect(levelOfCode('330106')).toBe('county')
    expect(levelOfCode('33010')).toBeNull()
    expect(parentOfCode('330106')).toBe('330100')
    expect(parentOfCode('330100')).toBe('330000')
    expect(parentOfCode('330000')).toBeNull()
  })
  it('flattens the tree parents first, with depth and names', () => {
    const flat = flattenRegions(TREE)
    expect(flat.map((f) => `${f.depth}:${f.region.code}`)).toEqual(['0:330000', '1:330100', '2:330106'])
    expect(flat[0].region).not.toHaveProperty('children')
    expect(regionNames(TREE).get('330106')).toBe('西湖区')
  })
  it('offers only higher levels as parents', () => {
    const all = flattenRegions(TREE).map((f) => f.region)
    expect(parentChoices(all, 'county').map((r) => r.code)).toEqual(['330000', '330100'])
    expect(parentChoices(all, 'city').map((r) => r.code)).toEqual(['330000'])
    expect(parentChoices(all, 'province')).toEqual([])
  })
  it('checks the form and builds the body', () => {
    expect(validateRegion({ code: '3301', name: ' ', level: '', parent_code: '' }, t)).toEqual({
      code: 'org.v.regionCode',
      name: 'org.v.required',
      level: 'org.v.required',
    })
    expect(validateRegion({ code: '330000', name: '浙江', level: 'province', parent_code: '110000' }, t)).toEqual({
      parent_code: 'org.v.provinceNoParent',
    })
    const ok = { code: ' 330110 ', name: ' 余杭区 ', level: 'county' as const, parent_code: '330100' }
    expect(validateRegion(ok, t)).toEqual({})
    expect(regionBody(ok)).toEqual({ code: '330110', name: '余杭区', level: 'county', parent_code: '330100' })
    expect(regionBody({ ...ok, parent_code: '' }).parent_code).toBeNull()
  })
})

describe('departments', () => {
  const d = (id: number, parent_id: number | null): Department => ({
    id,
    code: `d${id}`,
    name: `部门${id}`,
    parent_id,
    created_at: '2026-05-01T00:00:00Z',
    region_codes: [],
  })
  it('nests by parent, keeping order; unknown parents make roots', () => {
    const tree = departmentTree([d(1, null), d(2, 1), d(3, 2), d(4, 99), d(5, 1)])
    expect(tree.map((n) => n.id)).toEqual([1, 4])
    expect(tree[0].children.map((n) => n.id)).toEqual([2, 5])
    expect(tree[0].children[0].children.map((n) => n.id)).toEqual([3])
  })
  it('checks code and name', () => {
    expect(validateDepartment({ code: 'has space', name: '', parent_id: null }, t)).toEqual({
      code: 'org.v.code {"max":64}',
      name: 'org.v.required',
    })
    expect(validateDepartment({ code: 'market.sub-1', name: '市场', parent_id: 3 }, t)).toEqual({})
  })
})

describe('regulated objects', () => {
  const valid = { ...emptyObjectForm(), id: 'cold-01', name: '冷库', credit_code: '91330106MA3C012686' }
  it('parses coordinates strictly', () => {
    expect(parseCoordinate(' ')).toBeNull()
    expect(parseCoordinate('120.5')).toBe(120.5)
    expect(parseCoordinate('-30')).toBe(-30)
    expect(parseCoordinate('12e3')).toBeNaN()
    expect(parseCoordinate('1,5')).toBeNaN()
  })
  it('accepts a valid form', () => {
    expect(validateObject(valid, t, 'zh-CN')).toEqual({})
  })
  it('names every problem by field', () => {
    const p = validateObject(
      { ...valid, id: 'a.b', name: '', credit_code: '91350100M000100Y44', lon: '200', lat: '', region_code: '33' },
      t,
      'zh-CN',
    )
    expect(p.id).toBe('org.v.objectId')
    expect(p.name).toBe('org.v.required')
    expect(p.credit_code).toBe('第18位校验码错误：应为“3”，实际为“4”')
    expect(p.lon).toBe('org.v.range {"min":-180,"max":180}')
    expect(p.region_code).toBe('org.v.regionCode')
    expect(validateObject({ ...valid, lon: '120' }, t, 'en')).toEqual({ lat: 'org.v.pair' })
    expect(validateObject({ ...valid, lat: 'x' }, t, 'en')).toEqual({ lat: 'org.v.range {"min":-90,"max":90}' })
  })
  it('sends blank optional fields as null and coordinates as numbers', () => {
    expect(objectBody({ ...valid, name: ' 冷库 ', lon: '120.1', lat: '30.2', department_id: 3 })).toEqual({
      id: 'cold-01',
      name: '冷库',
      credit_code: '91330106MA3C012686',
      type: null,
      address: null,
      lon: 120.1,
      lat: 30.2,
      region_code: null,
      department_id: 3,
    })
  })
  it('fills the form from a record', () => {
    const rec = { id: 'x', name: 'n', credit_code: null, type: 't', address: null, lon: 120, lat: 0, region_code: '330106', department_id: null } as unknown as ObjectRecord
    expect(objectFormOf(rec)).toMatchObject({ credit_code: '', type: 't', lon: '120', lat: '0', region_code: '330106' })
  })
})

describe('catalog', () => {
  const item = (version: number, status: 'draft' | 'published', method = '非现场监管') =>
    ({ ...catalogFormOf('c1', { department: '市场局', main_item: '检查', method }), version, status }) as unknown as CatalogItem
  it('requires department, main item and method and a code', () => {
    const f = catalogFormOf('bad code')
    expect(validateCatalog(f, t)).toEqual({
      code: 'org.v.code {"max":64}',
      department: 'org.v.required',
      main_item: 'org.v.required',
      method: 'org.v.required',
    })
    expect(validateCatalog(catalogFormOf('demo-1', item(1, 'published')), t)).toEqual({})
  })
  it('sends optional blanks as null, required ones trimmed', () => {
    const body = catalogBody({ ...catalogFormOf('c'), department: ' 局 ', main_item: 'm', method: 'x', level: '  ' })
    expect(body.department).toBe('局')
    expect(body.level).toBeNull()
    expect(body.sub_item).toBeNull()
    expect(Object.keys(body)).toHaveLength(10)
  })
  it('finds the draft and what it changes', () => {
    const history = [item(2, 'draft', '日常检查'), item(1, 'published')]
    expect(draftOf(history)?.version).toBe(2)
    expect(draftOf([item(1, 'published')])).toBeNull()
    expect(changedFields(history[1], history[0])).toEqual(['method'])
  })
})

describe('imports and exports', () => {
  it('builds the URLs', () => {
    expect(importPath('/api/v1/catalog/import', { dryRun: true, publish: true })).toBe(
      '/api/v1/catalog/import?dry_run=true&publish=true',
    )
    expect(importPath('/api/v1/objects/import', {})).toBe('/api/v1/objects/import')
    expect(exportPath('/api/v1/objects/export', 'csv')).toBe('/api/v1/objects/export')
    expect(exportPath('/api/v1/objects/export', 'xlsx')).toBe('/api/v1/objects/export?format=xlsx')
  })
  it('checks the chosen file before sending it', () => {
    expect(importFileProblem({ name: 'a.CSV', size: 10 })).toBeNull()
    expect(importFileProblem({ name: 'a.xlsx', size: 1024 * 1024 })).toBeNull()
    expect(importFileProblem({ name: 'a.xls', size: 10 })).toBe('type')
    expect(importFileProblem({ name: 'a.csv', size: 0 })).toBe('empty')
    expect(importFileProblem({ name: 'a.csv', size: 1024 * 1024 + 1 })).toBe('size')
  })
  it('counts refused data rows and words row errors', () => {
    const errors = [
      { row: 1, field: 'x', message_en: 'unknown column', message_zh: '' },
      { row: 3, field: 'id', message_en: 'bad', message_zh: '无效' },
      { row: 3, field: 'name', message_en: 'required', message_zh: '必填' },
      { row: 5, field: 'lat', message_en: 'range', message_zh: '范围' },
    ]
    expect(refusedRows({ updated: 0, errors })).toBe(2)
    expect(rowErrorMessage(errors[1], 'zh-CN')).toBe('无效')
    expect(rowErrorMessage(errors[0], 'zh-CN')).toBe('unknown column')
    expect(rowErrorMessage(errors[1], 'en')).toBe('bad')
  })
})
