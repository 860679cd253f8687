// Accounts as the security administrator manages them (portal/src/routes/auth.rs): the roles, the
// user-name and password rules the server applies (store/src/auth.rs), generated passwords for
// new accounts and resets, and the request bodies.
import type { Role } from './roles'
import type { FormProblems, Translate } from './registers'
import { REGION_CODE } from './registers'

/** Every role, in the order the forms list them (three administrators first: 三员分立). */
export const ROLES: readonly Role[] = [
  'system_admin',
  'security_admin',
  'audit_admin',
  'monitor',
  'handler',
  'leader',
  'reviewer',
  'resupervision',
]

/** Roles whose view is their department's (and their account's regions). */
export const DEPARTMENT_ROLES: readonly Role[] = ['handler', 'leader']

/**
 * Whether these roles may read the organisation (departments, regions): the roles with a view of
 * business data, and the security administrator who assigns accounts to departments
 * (portal/src/routes/registers.rs `may_read_organisation`). The audit administrator has none, so
 * their pages must not ask (a 403 would only fill the console).
 */
export function readsRegisters(roles: readonly string[]): boolean {
  const viewers: readonly Role[] = ['system_admin', 'security_admin', 'monitor', 'reviewer', 'resupervision', 'handler', 'leader']
  return roles.some((r) => (viewers as readonly string[]).includes(r))
}

export interface UserAccount {
  id: number
  username: string
  display_name: string
  roles: Role[]
  roles_zh: string[]
  department_id: number | null
  region_codes: string[]
  disabled: boolean
  must_change_password: boolean
}

/** 2-64 characters of A-Z a-z 0-9 _ . - */
export const USERNAME = /^[A-Za-z0-9_.-]{2,64}$/

export type PasswordProblem = 'length' | 'classes' | 'username'

/** The server's password policy: 8-128 characters, three of four classes, not the user name. */
export function passwordProblem(username: string, password: string): PasswordProblem | null {
  const n = [...password].length
  if (n < 8 || n > 128) return 'length'
  const classes = [/[A-Z]/, /[a-z]/, /[0-9]/, /[^A-Za-z0-9]/].filter((re) => re.test(password)).length
  if (classes < 3) return 'classes'
  if (username && password.toLowerCase().includes(username.toLowerCase())) return 'username'
  return null
}

// Characters easy to read aloud and to type from a screen: no 0/O, 1/l/I.
const UPPER = 'ABCDEFGHJKLMNPQRSTUVWXYZ'
const LOWER = 'abcdefghijkmnpqrstuvwxyz'
const DIGITS = '23456789'
const SYMBOLS = '@#%+=-_'

/** Fills `out` with random 32-bit values (the browser's CSPRNG). */
export type RandomSource = (out: Uint32Array) => void

const cryptoRandom: RandomSource = (out) => {
  globalThis.crypto.getRandomValues(out)
}

/**
 * A random password of `length` characters with every class present, which therefore meets the
 * policy for any user name of two or more characters unless it happens to contain it (then another
 * is drawn).
 */
export function generatePassword(username: string, length = 14, random: RandomSource = cryptoRandom): string {
  const sets = [UPPER, LOWER, DIGITS, SYMBOLS]
  const all = sets.join('')
  for (;;) {
    const r = new Uint32Array(length * 2)
    random(r)
    const chars = Array.from({ length }, (_, i) => {
      const set = i < sets.length ? sets[i] : all
      return set[r[i] % set.length]
    })
    // Shuffle so the classes are not always at the front (Fisher-Yates on the second half of r).
    for (let i = chars.length - 1; i > 0; i--) {
      const j = r[length + i] % (i + 1)
      ;[chars[i], chars[j]] = [chars[j], chars[i]]
    }
    const p = chars.join('')
    if (passwordProblem(username, p) === null) return p
  }
}

export interface UserForm {
  username: string
  display_name: string
  password: string
  roles: Role[]
  department_id: number | null
  region_codes: string[]
}

export function passwordMessage(p: PasswordProblem, t: Translate): string {
  return t(`org.users.pw.${p}`)
}

export function validateUser(f: UserForm, t: Translate): FormProblems {
  const p: FormProblems = {}
  const username = f.username.trim()
  if (!USERNAME.test(username)) p.username = t('org.v.username')
  const pw = passwordProblem(username, f.password)
  if (pw) p.password = passwordMessage(pw, t)
  // A handler or leader with neither sees nothing at all (portal/src/access.rs).
  if (f.roles.some((r) => DEPARTMENT_ROLES.includes(r)) && f.department_id === null && f.region_codes.length === 0) {
    p.department_id = t('org.users.needDepartment')
  }
  const bad = f.region_codes.find((c) => !REGION_CODE.test(c))
  if (bad !== undefined) p.region_codes = t('org.v.regionCode')
  return p
}

/** The body of `POST /api/v1/users` (the server makes the person change the password at first login). */
export function userBody(f: UserForm) {
  return {
    username: f.username.trim(),
    display_name: f.display_name.trim(),
    password: f.password,
    roles: [...f.roles],
    department_id: f.department_id,
    region_codes: [...f.region_codes],
  }
}

/** Accounts whose user name or display name contains `q` (case-insensitive), all when blank. */
export function filterUsers<T extends Pick<UserAccount, 'username' | 'display_name'>>(users: readonly T[], q: string): T[] {
  const s = q.trim().toLowerCase()
  if (!s) return [...users]
  return users.filter((u) => u.username.toLowerCase().includes(s) || u.display_name.toLowerCase().includes(s))
}
