import { describe, expect, it } from 'vitest'
import { flattenRegions, itemLabel } from './configRefs'

describe('configuration references', () => {
  it('flattens the region tree with paths, parents first', () => {
    const tree = [
      {
        code: '330000',
        name: '浙江省',
        level: 'province',
        children: [
          {
            code: '330100',
            name: '杭州市',
            level: 'city',
            children: [
              { code: '330102', name: '上城区', level: 'county', children: [] },
              { code: '330106', name: '西湖区', level: 'county', children: [] },
            ],
          },
        ],
      },
    ]
    expect(flattenRegions(tree)).toEqual([
      { code: '330000', name: '浙江省', path: '浙江省', depth: 0 },
      { code: '330100', name: '杭州市', path: '浙江省 / 杭州市', depth: 1 },
      { code: '330102', name: '上城区', path: '浙江省 / 杭州市 / 上城区', depth: 2 },
      { code: '330106', name: '西湖区', path: '浙江省 / 杭州市 / 西湖区', depth: 2 },
    ])
  })

  it('labels items by code and name', () => {
    expect(itemLabel({ code: 'demo-dust', sub_item: '扬尘超标', main_item: '扬尘监管' })).toBe('demo-dust 扬尘超标')
    expect(itemLabel({ code: 'x', sub_item: null, main_item: '主项' })).toBe('x 主项')
    expect(itemLabel({ code: 'x', sub_item: null, main_item: null })).toBe('x')
  })
})
