import { describe, expect, it } from 'vitest'
import { captchaRequired, complaintFormData, missingFields, parseTrackingNo, serviceName, TRACKING_NO } from './public'

describe('tracking numbers', () => {
  it('accepts the server format and makes typed input canonical', () => {
    expect(TRACKING_NO.test('TS20260501AB12CD34EF')).toBe(true)
    expect(parseTrackingNo(' ts20260501ab12 cd34ef ')).toBe('TS20260501AB12CD34EF')
  })
  it('refuses anything else', () => {
    for (const bad of ['', 'TS2026050AB12CD34EF', 'TS20260501AB12CD34E', 'TS20260501AB12CD34EFG', 'XS20260501AB12CD34EF', 'TS20260501AB12CD34E_', '../TS20260501AB12CD34EF']) {
      expect(parseTrackingNo(bad)).toBeNull()
    }
  })
})

describe('complaint form', () => {
  const draft = {
    service_code: 'env.noise',
    description: '  夜间施工噪声  ',
    address: '',
    contact_name: '张三',
    phone: '   ',
    captcha_id: 'c1',
    captcha_answer: 'ab3d',
  }

  it('sends trimmed fields and leaves blank optional ones out', () => {
    const f = complaintFormData(draft)
    expect(f.get('service_code')).toBe('env.noise')
    expect(f.get('description')).toBe('夜间施工噪声')
    expect(f.get('contact_name')).toBe('张三')
    expect(f.has('address')).toBe(false)
    expect(f.has('phone')).toBe(false)
    expect(f.has('object_id')).toBe(false)
    expect(f.get('captcha_id')).toBe('c1')
    expect(f.get('captcha_answer')).toBe('ab3d')
  })

  it('puts at most three files under attachments, with their names', () => {
    const files = [1, 2, 3, 4].map((i) => new File([new Uint8Array([i])], `p${i}.png`, { type: 'image/png' }))
    const f = complaintFormData(draft, files)
    const sent = f.getAll('attachments') as File[]
    expect(sent.map((x) => x.name)).toEqual(['p1.png', 'p2.png', 'p3.png'])
  })

  it('names the required fields that are missing', () => {
    expect(missingFields(draft)).toEqual([])
    expect(missingFields({ ...draft, service_code: '', captcha_answer: ' ' })).toEqual(['service_code', 'captcha_answer'])
  })

  it('does not ask for a CAPTCHA answer when the server turned the CAPTCHA off', () => {
    expect(missingFields({ ...draft, captcha_answer: '' }, false)).toEqual([])
    expect(missingFields({ ...draft, description: ' ', captcha_answer: '' }, false)).toEqual(['description'])
    expect(captchaRequired({ required: false })).toBe(false)
    expect(captchaRequired({ required: true, id: 'c', image: 'data:' })).toBe(true)
    expect(captchaRequired({ id: 'c', image: 'data:' })).toBe(true)
  })
})

describe('service names', () => {
  it('follow the language and fall back to the other one', () => {
    expect(serviceName({ service_name: 'Noise', service_name_zh: '噪声' }, 'zh-CN')).toBe('噪声')
    expect(serviceName({ service_name: 'Noise', service_name_zh: '噪声' }, 'en')).toBe('Noise')
    expect(serviceName({ service_name: '', service_name_zh: '噪声' }, 'en')).toBe('噪声')
  })
})
