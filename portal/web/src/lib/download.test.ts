import { describe, expect, it } from 'vitest'
import { filenameFrom } from './download'

describe('download file names', () => {
  it('come from the Content-Disposition header', () => {
    expect(filenameFrom('attachment; filename="department-metrics-20260601-20260630.xlsx"', 'x.xlsx')).toBe(
      'department-metrics-20260601-20260630.xlsx',
    )
    expect(filenameFrom('attachment; filename=plain.xlsx', 'x.xlsx')).toBe('plain.xlsx')
    expect(filenameFrom(`attachment; filename="a.xlsx"; filename*=UTF-8''%E7%BB%9F%E8%AE%A1.xlsx`, 'x')).toBe('统计.xlsx')
  })

  it('fall back when missing, empty or a path', () => {
    expect(filenameFrom(null, 'x.xlsx')).toBe('x.xlsx')
    expect(filenameFrom('attachment', 'x.xlsx')).toBe('x.xlsx')
    expect(filenameFrom('attachment; filename=""', 'x.xlsx')).toBe('x.xlsx')
    expect(filenameFrom('attachment; filename="../../etc/passwd"', 'x.xlsx')).toBe('passwd')
    expect(filenameFrom(`attachment; filename*=UTF-8''%E0%A4%A; filename="ok.pdf"`, 'x')).toBe('ok.pdf')
  })
})
