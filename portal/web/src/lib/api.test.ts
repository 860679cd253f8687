import { afterEach, describe, expect, it, vi } from 'vitest'
import { ApiError, errorMessage, post, postFile, query, setCsrfToken, toApiError } from './api'

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

describe('request bodies', () => {
  afterEach(() => {
    vi.unstubAllGlobals()
    setCsrfToken('')
  })
  function capture() {
    const calls: { url: string; init: RequestInit }[] = []
    vi.stubGlobal('fetch', async (url: string, init: RequestInit) => {
      calls.push({ url, init })
      return new Response('{"updated":1,"errors":[]}', { status: 200 })
    })
    return calls
  }
  it('sends a file as its own bytes with its type and the CSRF header', async () => {
    const calls = capture()
    setCsrfToken('tok')
    const file = new Blob(['id,name\n'], { type: 'text/csv' })
    const r = await postFile<{ updated: number }>('/api/v1/objects/import', file)
    expect(r.updated).toBe(1)
    const headers = calls[0].init.headers as Record<string, string>
    expect(calls[0].init.body).toBe(file)
    expect(headers['Content-Type']).toBe('text/csv')
    expect(headers['X-CSRF-Token']).toBe('tok')
  })
  it('labels a file without a type as bytes, and JSON as JSON', async () => {
    const calls = capture()
    await postFile('/x', new Blob([new Uint8Array([80, 75, 3, 4])]))
    expect((calls[0].init.headers as Record<string, string>)['Content-Type']).toBe('application/octet-stream')
    await post('/y', { a: 1 })
    expect((calls[1].init.headers as Record<string, string>)['Content-Type']).toBe('application/json')
    expect(calls[1].init.body).toBe('{"a":1}')
  })
})
