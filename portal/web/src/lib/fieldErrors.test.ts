import { describe, expect, it } from 'vitest'
import { ApiError, toApiError } from './api'
import { fieldProblem } from './fieldErrors'

const FIELDS = ['id', 'name', 'credit_code', 'region_code']

describe('field of a refused request', () => {
  it('reads the field named at the start of a store FieldError', () => {
    const e = toApiError(400, {
      error: { code: 'bad_request', message: 'region_code: unknown region', message_zh: 'region_code：行政区划不存在' },
    })
    expect(fieldProblem(e, FIELDS, 'zh-CN')).toEqual({ field: 'region_code', message: '行政区划不存在' })
    expect(fieldProblem(e, FIELDS, 'en')).toEqual({ field: 'region_code', message: 'unknown region' })
  })
  it("reads the field inside serde's text for a body that does not fit its type", () => {
    const e = toApiError(400, {
      error: {
        code: 'invalid',
        message:
          "invalid request body: Failed to deserialize the JSON body into the target type: credit_code: wrong check character '4' at position 18: expected '3' at line 1 column 58",
        message_zh:
          "请求体内容无效：Failed to deserialize the JSON body into the target type: credit_code: wrong check character '4' at position 18: expected '3' at line 1 column 58",
      },
    })
    expect(fieldProblem(e, FIELDS, 'en')).toEqual({
      field: 'credit_code',
      message: "wrong check character '4' at position 18: expected '3'",
    })
  })
  it('ignores fields the form does not have, other statuses and other errors', () => {
    const other = toApiError(400, { error: { message: 'format: not csv', message_zh: 'format：只支持 csv' } })
    expect(fieldProblem(other, FIELDS, 'zh-CN')).toBeNull()
    expect(fieldProblem(toApiError(409, { error: { message: 'id: exists', message_zh: 'id：已存在' } }), FIELDS, 'en')).toBeNull()
    expect(fieldProblem(new Error('id: x'), FIELDS, 'en')).toBeNull()
  })
  it('keeps the full text of this language when only the other one names the field', () => {
    const e = new ApiError(400, 'bad_request', 'name: name is required', '名称为必填项')
    expect(fieldProblem(e, FIELDS, 'zh-CN')).toEqual({ field: 'name', message: '名称为必填项' })
  })
})
