import { describe, expect, it } from 'vitest'
import { checkCharacter, creditCodeMessage, creditCodeProblem } from './creditCode'

describe('unified social credit code (GB 32100-2015)', () => {
  it('accepts valid codes, with surrounding spaces', () => {
    // The standard's published example and two demo objects' codes.
    for (const c of ['91350100M000100Y43', '91330106MA3C012686', ' 91330108MA3C01276X ']) {
      expect(creditCodeProblem(c)).toBeNull()
    }
  })
  it('computes the check character, 31 written as 0', () => {
    expect(checkCharacter('91350100M000100Y4')).toBe('3')
    expect(checkCharacter('91330108MA3C01276')).toBe('X')
    // A body whose weighted sum is 0 mod 31 checks with 0.
    const body16 = '91330106MA2H0000'
    const alphabet = '0123456789ABCDEFGHJKLMNPQRTUWXY'
    const zero = [...alphabet].map((c) => body16 + c).find((b) => checkCharacter(b) === '0')
    expect(zero).toBeDefined()
    expect(creditCodeProblem(`${zero}0`)).toBeNull()
    expect(checkCharacter('91350100M000100Y')).toBeNull()
    expect(checkCharacter('91350100M000100I4')).toBeNull()
  })
  it('names the first problem', () => {
    expect(creditCodeProblem('9135010')).toEqual({ kind: 'length', len: 7 })
    expect(creditCodeProblem('91350100m000100Y43')).toEqual({ kind: 'lowercase', position: 9, found: 'm' })
    expect(creditCodeProblem('91350100M0001O0Y43')).toEqual({ kind: 'character', position: 14, found: 'O' })
    expect(creditCodeProblem('B1350100M000100Y43')).toEqual({ kind: 'authority', found: 'B' })
    expect(creditCodeProblem('94350100M000100Y43')).toMatchObject({ kind: 'entityType', authority: '9', found: '4' })
    expect(creditCodeProblem('9135A100M000100Y43')).toEqual({ kind: 'division', position: 5, found: 'A' })
    expect(creditCodeProblem('91350100M000100Y44')).toEqual({ kind: 'check', expected: '3', found: '4' })
  })
  it('words problems like the server, in both languages', () => {
    const p = creditCodeProblem('91350100M000100Y44')!
    expect(creditCodeMessage(p, 'zh-CN')).toBe('第18位校验码错误：应为“3”，实际为“4”')
    expect(creditCodeMessage(p, 'en')).toBe("wrong check character '4' at position 18: expected '3'")
    expect(creditCodeMessage({ kind: 'entityType', authority: '9', found: '4', expected: '123' }, 'zh-CN')).toContain(
      '应为 1、2、3 之一',
    )
    expect(creditCodeMessage({ kind: 'length', len: 17 }, 'zh-CN')).toBe('统一社会信用代码应为18位，此代码为17位')
  })
})
