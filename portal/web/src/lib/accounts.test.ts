import { describe, expect, it } from 'vitest'
import { filterUsers, generatePassword, passwordProblem, readsRegisters, userBody, validateUser, type UserForm } from './accounts'

const t = (key: string) => key

describe('password policy (store/src/auth.rs)', () => {
  it('needs 8 to 128 characters', () => {
    expect(passwordProblem('bob', 'Ab1!')).toBe('length')
    expect(passwordProblem('bob', `Ab1!${'x'.repeat(125)}`)).toBe('length')
  })
  it('needs three of four classes', () => {
    expect(passwordProblem('bob', 'abcdefgh1')).toBe('classes')
    expect(passwordProblem('bob', 'abcdefG1')).toBeNull()
    expect(passwordProblem('bob', 'abcdef!1')).toBeNull()
  })
  it('refuses the user name inside, whatever the case', () => {
    expect(passwordProblem('Handler1', 'xhandler1!A')).toBe('username')
    expect(passwordProblem('admin', 'Demo@2026')).toBeNull()
  })
})

describe('generated passwords', () => {
  it('always meet the policy', () => {
    for (let i = 0; i < 200; i++) {
      const p = generatePassword('handler1')
      expect(p).toHaveLength(14)
      expect(passwordProblem('handler1', p)).toBeNull()
    }
  })
  it('draw again when one contains the user name', () => {
    // All zeros first: mostly 'A's, which contain the user name "AA"; then real randomness.
    let calls = 0
    const source = (out: Uint32Array) => {
      calls++
      if (calls === 1) out.fill(0)
      else globalThis.crypto.getRandomValues(out)
    }
    const p = generatePassword('AA', 14, source)
    expect(calls).toBeGreaterThan(1)
    expect(passwordProblem('AA', p)).toBeNull()
  })
})

describe('user form', () => {
  const form: UserForm = {
    username: 'handler9',
    display_name: '测试-承办人',
    password: 'Good#Pass9',
    roles: ['handler'],
    department_id: 3,
    region_codes: [],
  }
  it('accepts a valid account', () => {
    expect(validateUser(form, t)).toEqual({})
  })
  it('names the problems', () => {
    expect(validateUser({ ...form, username: 'a b', password: 'short' }, t)).toEqual({
      username: 'org.v.username',
      password: 'org.users.pw.length',
    })
    expect(validateUser({ ...form, department_id: null }, t)).toEqual({ department_id: 'org.users.needDepartment' })
    expect(validateUser({ ...form, department_id: null, region_codes: ['330106'] }, t)).toEqual({})
    expect(validateUser({ ...form, region_codes: ['3301'] }, t)).toEqual({ region_codes: 'org.v.regionCode' })
  })
  it('builds the body with a trimmed name', () => {
    expect(userBody({ ...form, username: ' handler9 ' })).toMatchObject({ username: 'handler9', roles: ['handler'] })
  })
  it('filters by user or display name', () => {
    const users = [
      { username: 'admin', display_name: '系统管理员' },
      { username: 'handler1', display_name: '住建局承办人' },
    ]
    expect(filterUsers(users, '住建').map((u) => u.username)).toEqual(['handler1'])
    expect(filterUsers(users, 'ADM').map((u) => u.username)).toEqual(['admin'])
    expect(filterUsers(users, ' ')).toHaveLength(2)
  })
})

describe('who reads the registers', () => {
  it('is everyone with a view of business data, not the security or audit administrator', () => {
    expect(readsRegisters(['security_admin'])).toBe(true)
    expect(readsRegisters(['audit_admin'])).toBe(false)
    expect(readsRegisters(['security_admin', 'monitor'])).toBe(true)
    expect(readsRegisters(['handler'])).toBe(true)
  })
})
