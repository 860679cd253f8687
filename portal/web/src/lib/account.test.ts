import { describe, expect, it } from 'vitest'
import { passwordBody, passwordProblems, tokenName, TOKEN_NAME_MAX } from './account'

describe('password change form', () => {
  it('goes when both passwords are given and repeated', () => {
    expect(passwordProblems({ current: 'Old#Pass2026', next: 'New#Pass2026', confirm: 'New#Pass2026' })).toEqual([])
  })

  it('names what is missing or wrong', () => {
    expect(passwordProblems({ current: '', next: '', confirm: '' })).toEqual(['currentRequired', 'nextRequired'])
    expect(passwordProblems({ current: 'a', next: 'New#Pass2026', confirm: 'New#Pass2025' })).toEqual(['mismatch'])
    expect(passwordProblems({ current: 'Same#2026', next: 'Same#2026', confirm: 'Same#2026' })).toEqual(['unchanged'])
  })

  it('leaves the policy to the server and sends passwords untouched', () => {
    // Too short for the policy, but that is the server's answer to give.
    expect(passwordProblems({ current: 'x', next: 'short', confirm: 'short' })).toEqual([])
    expect(passwordBody({ current: ' a ', next: ' b c ', confirm: ' b c ' })).toEqual({ current: ' a ', new: ' b c ' })
  })
})

describe('token names', () => {
  it('are trimmed and 1 to 100 characters (not bytes)', () => {
    expect(tokenName('  数据对接  ')).toEqual({ name: '数据对接' })
    expect(tokenName('   ')).toEqual({ problem: 'required' })
    expect(tokenName('令'.repeat(TOKEN_NAME_MAX))).toEqual({ name: '令'.repeat(TOKEN_NAME_MAX) })
    expect(tokenName('x'.repeat(TOKEN_NAME_MAX + 1))).toEqual({ problem: 'tooLong' })
  })
})
