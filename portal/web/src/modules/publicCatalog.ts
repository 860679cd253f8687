import type { PageModule } from './types'

// Messages of the public portal's catalog (components/PublicCatalog.vue on /public). No routes of
// its own: the public pages are routed in router.ts, outside the logged-in layout.
const zh = {
  pubCatalog: {
    title: '监管事项目录',
    hint: '本市现行有效的监管事项，可按事项名称、实施部门、编码、监管方式或监管对象类型查询。',
    search: '输入关键词，多个词以空格分隔',
    query: '查询',
    empty: '没有符合条件的监管事项',
    total: '共 {n} 项',
    details: '详情',
    field: {
      code: '事项编码',
      department: '实施部门',
      main_item: '主项名称',
      sub_item: '子项名称',
      method: '监管方式',
      measures: '监管措施',
      object_type: '监管对象类型',
      legal_basis: '设定依据',
      process: '监管流程',
      result: '监管结果',
      level: '事项层级',
      version: '版本',
      published_date: '发布日期',
    },
  },
}

const en: typeof zh = {
  pubCatalog: {
    title: 'Regulatory item catalog',
    hint: 'The regulatory items in force; search by item, department, code, method or type of regulated object.',
    search: 'Keywords, separated by spaces',
    query: 'Search',
    empty: 'No items match',
    total: '{n} items',
    details: 'Details',
    field: {
      code: 'Code',
      department: 'Department',
      main_item: 'Item',
      sub_item: 'Sub-item',
      method: 'Method',
      measures: 'Measures',
      object_type: 'Regulated objects',
      legal_basis: 'Legal basis',
      process: 'Process',
      result: 'Results',
      level: 'Level',
      version: 'Version',
      published_date: 'Published',
    },
  },
}

export default { routes: [], messages: { zh, en } } satisfies PageModule
