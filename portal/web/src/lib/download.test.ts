import { afterEach, describe, expect, it, vi } from 'vitest'
import { ApiError } from './api'
import { fetchFile, filenameFromDisposition } from './download'

describe('file name from Content-Disposition', () => {
  it('reads quoted, bare and RFC 5987 names, preferring the latter', () => {
    expect(filenameFromDisposition('attachment; filename="objects.csv"', 'x')).toBe('objects.csv')
    expect(filenameFromDisposition('attachment; filename=catalog.xlsx', 'x')).toBe('catalog.xlsx')
    expect(
      filenameFromDisposition(`attachment; filename="a.csv"; filename*=UTF-8''%E7%9B%91%E7%AE%A1.csv`, 'x'),
    ).toBe('监管.csv')
  })
  it('falls back when there is no usable name, and drops directories', () => {
    expect(filenameFromDisposition(null, 'devices.csv')).toBe('devices.csv')
    expect(filenameFromDisposition('inline', 'devices.csv')).toBe('devices.csv')
    expect(filenameFromDisposition('attachment; filename="../../etc/passwd"', 'x')).toBe('passwd')
    expect(filenameFromDisposition('attachment; filename=""', 'f.csv')).toBe('f.csv')
  })
})

describe('fetching a file', () => {
  afterEach(() => vi.unstubAllGlobals())

  it("returns the body with the server's name", async () => {
    const fetch = vi.fn(
      async () =>
        new Response('id,name\n', {
          status: 200,
          headers: { 'Content-Disposition': 'attachment; filename="objects.csv"' },
        }),
    )
    vi.stubGlobal('fetch', fetch)
    const f = await fetchFile('/api/v1/objects/export', 'fallback.csv')
    expect(f.filename).toBe('objects.csv')
    expect(await f.blob.text()).toBe('id,name\n')
    expect(fetch).toHaveBeenCalledWith('/api/v1/objects/export', { credentials: 'same-origin' })
  })
  it("throws the server's error instead of saving it", async () => {
    const body = JSON.stringify({ error: { code: 'forbidden', message: 'forbidden', message_zh: '无权访问' } })
    vi.stubGlobal('fetch', async () => new Response(body, { status: 403 }))
    const err = await fetchFile('/api/v1/objects/export', 'x.csv').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ApiError)
    expect((err as ApiError).status).toBe(403)
    expect((err as ApiError).messageZh).toBe('无权访问')
  })
})
