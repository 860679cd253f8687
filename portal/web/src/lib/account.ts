// "My account": checks made before anything is sent. The password policy itself is the server's
// (store/src/auth.rs check_password_policy): the page shows its refusal as it comes, so the two
// can never disagree; only what the server cannot know (the repeated password) is checked here.

export interface PasswordChange {
  current: string
  next: string
  confirm: string
}

export type PasswordProblem = 'currentRequired' | 'nextRequired' | 'mismatch' | 'unchanged'

/** What stops the form from being sent, in the order the fields appear; empty when it may go. */
export function passwordProblems(f: PasswordChange): PasswordProblem[] {
  const out: PasswordProblem[] = []
  if (f.current === '') out.push('currentRequired')
  if (f.next === '') out.push('nextRequired')
  else if (f.next !== f.confirm) out.push('mismatch')
  else if (f.next === f.current) out.push('unchanged')
  return out
}

/** The request body of `POST /api/v1/auth/password`: passwords exactly as typed (spaces count). */
export function passwordBody(f: PasswordChange): { current: string; new: string } {
  return { current: f.current, new: f.next }
}

/** The longest token name the server takes, in characters. */
export const TOKEN_NAME_MAX = 100

/** A token name as sent (trimmed), or the reason it cannot be. */
export function tokenName(raw: string): { name: string } | { problem: 'required' | 'tooLong' } {
  const name = raw.trim()
  if (name === '') return { problem: 'required' }
  if ([...name].length > TOKEN_NAME_MAX) return { problem: 'tooLong' }
  return { name }
}

/** One of my API tokens (`GET /api/v1/auth/tokens`): never the secret. */
export interface ApiTokenInfo {
  id: number
  name: string
  created_at: string
  last_used: string | null
}
