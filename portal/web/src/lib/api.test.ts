import { describe, expect, it } from 'vitest'
import { ApiError, errorMessage, query, toApiError } from './api'

describe('error messages', () => {
  const both = toApiError(409, { error: { code: 'state', message: 'cannot sign', message_zh: '不能签收' } })
  it('picks the current language', () => {
    expect(both.code).toBe('state')
    expect(errorMessage(both, 'zh-CN')).toBe('不能签收')
    expect(errorMessage(both, 'en')).toBe('cannot sign')
  })
  it('falls back to the other language, then to the status', () => {
    expect(errorMessage(toApiError(400, { error: { message: 'bad' } }), 'zh-CN')).toBe('bad')
    expect(errorMessage(toApiError(502, '<html>'), 'zh-CN')).toBe('请求失败（HTTP 502）')
    expect(errorMessage(new ApiError(500, 'x', '', ''), 'en')).toBe('request failed (HTTP 500)')
  })
  it('names a network failure', () => {
    expect(errorMessage(new TypeError('fetch failed'), 'zh-CN')).toBe('无法连接服务器')
  })
})

describe('query', () => {
  it('keeps only given values', () => {
    expect(query({ state: 'dispatched', level: '', overdue: true, limit: 20, x: null })).toBe(
      '?state=dispatched&overdue=true&limit=20',
    )
    expect(query({})).toBe('')
  })
})
