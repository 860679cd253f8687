// The unified social credit code (统一社会信用代码, GB 32100-2015), checked in the form before the
// server checks it again (store/src/registers/credit_code.rs, whose rules and messages this follows).
//
// 18 characters from ALPHABET (no I, O, Z, S, V): position 1 the registration authority, 2 the
// entity type, 3-8 the administrative division, 9-17 the organization code, 18 the check character
// `31 - (Σ value × weight mod 31)`, 31 written as `0`.

export const ALPHABET = '0123456789ABCDEFGHJKLMNPQRTUWXY'

/** Weights of positions 1..17 (3^(i-1) mod 31). */
export const WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28] as const

/** Registration authority -> the entity types it may register (GB 32100-2015 appendix A). */
const AUTHORITIES: Record<string, string> = {
  '1': '1239',
  '2': '19',
  '3': '123459',
  '4': '19',
  '5': '1239',
  '6': '129',
  '7': '129',
  '8': '19',
  '9': '123',
  A: '19',
  N: '1239',
  Y: '1',
}

/** What is wrong with a string that is not a credit code; positions are 1-based. */
export type CreditCodeProblem =
  | { kind: 'length'; len: number }
  | { kind: 'lowercase'; position: number; found: string }
  | { kind: 'character'; position: number; found: string }
  | { kind: 'authority'; found: string }
  | { kind: 'entityType'; authority: string; found: string; expected: string }
  | { kind: 'division'; position: number; found: string }
  | { kind: 'check'; expected: string; found: string }

/** The check character of 17 alphabet characters; `null` for anything else. */
export function checkCharacter(first17: string): string | null {
  const chars = [...first17]
  if (chars.length !== 17) return null
  let sum = 0
  for (let i = 0; i < 17; i++) {
    const v = ALPHABET.indexOf(chars[i])
    if (v < 0) return null
    sum += v * WEIGHTS[i]
  }
  return ALPHABET[(31 - (sum % 31)) % 31]
}

/** `null` when `input` (surrounding spaces ignored) is a valid code, else the first problem. */
export function creditCodeProblem(input: string): CreditCodeProblem | null {
  const chars = [...input.trim()]
  if (chars.length !== 18) return { kind: 'length', len: chars.length }
  for (let i = 0; i < 18; i++) {
    const c = chars[i]
    if (ALPHABET.includes(c)) continue
    if (c !== c.toUpperCase()) return { kind: 'lowercase', position: i + 1, found: c }
    return { kind: 'character', position: i + 1, found: c }
  }
  const types = AUTHORITIES[chars[0]]
  if (types === undefined) return { kind: 'authority', found: chars[0] }
  if (!types.includes(chars[1])) return { kind: 'entityType', authority: chars[0], found: chars[1], expected: types }
  for (let i = 2; i < 8; i++) {
    if (!/[0-9]/.test(chars[i])) return { kind: 'division', position: i + 1, found: chars[i] }
  }
  const expected = checkCharacter(chars.slice(0, 17).join('')) as string
  if (chars[17] !== expected) return { kind: 'check', expected, found: chars[17] }
  return null
}

/** The problem in words, in the UI's language (the server's wording). */
export function creditCodeMessage(p: CreditCodeProblem, locale: string): string {
  const en = locale === 'en'
  switch (p.kind) {
    case 'length':
      return en
        ? `a unified social credit code has 18 characters, this one has ${p.len}`
        : `统一社会信用代码应为18位，此代码为${p.len}位`
    case 'lowercase':
      return en
        ? `lowercase letter '${p.found}' at position ${p.position}: the code is written in capital letters`
        : `第${p.position}位为小写字母“${p.found}”，统一社会信用代码使用大写字母`
    case 'character':
      return en
        ? `bad character '${p.found}' at position ${p.position}: only digits and capital letters other than I, O, Z, S, V are used`
        : `第${p.position}位字符“${p.found}”无效：只允许数字和除 I、O、Z、S、V 以外的大写字母`
    case 'authority':
      return en
        ? `bad registration authority code '${p.found}' at position 1 (expected one of 1-9, A, N, Y)`
        : `第1位登记管理部门代码“${p.found}”无效（应为 1-9、A、N、Y 之一）`
    case 'entityType':
      return en
        ? `bad entity type '${p.found}' at position 2 for registration authority '${p.authority}' (expected one of ${[...p.expected].join(', ')})`
        : `第2位机构类别代码“${p.found}”与登记管理部门代码“${p.authority}”不符（应为 ${[...p.expected].join('、')} 之一）`
    case 'division':
      return en
        ? `bad character '${p.found}' at position ${p.position}: positions 3-8 are the administrative division code, digits only`
        : `第${p.position}位字符“${p.found}”无效：第3-8位为登记管理机关行政区划码，只能是数字`
    case 'check':
      return en
        ? `wrong check character '${p.found}' at position 18: expected '${p.expected}'`
        : `第18位校验码错误：应为“${p.expected}”，实际为“${p.found}”`
  }
}
