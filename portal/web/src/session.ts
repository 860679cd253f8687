import { reactive } from 'vue'
import { get, post, setCsrfToken, ApiError } from './lib/api'

export interface User {
  id: number
  username: string
  display_name: string
  roles: string[]
  roles_zh: string[]
  department_id: number | null
}

interface Me {
  user: User
  csrf_token: string
}

/** Who is logged in; `null` until known or after logout. The cookie is the session. */
export const session = reactive<{ user: User | null; checked: boolean }>({ user: null, checked: false })

// The session cookie is HttpOnly, so the page cannot see it. This flag (no secret in it) says a
// login happened in this browser: without it the page shows the login form straight away instead
// of asking the server and getting a 401, which browsers report as a console error.
const SIGNED_IN_KEY = 'offsite.signedIn'

function remember(on: boolean): void {
  try {
    if (on) localStorage.setItem(SIGNED_IN_KEY, '1')
    else localStorage.removeItem(SIGNED_IN_KEY)
  } catch {
    // Storage refused: the next load asks the server anyway.
  }
}

function mayHaveSession(): boolean {
  try {
    return localStorage.getItem(SIGNED_IN_KEY) === '1'
  } catch {
    return true
  }
}

/** Asks the server once per page load whether the cookie still holds a session. */
export async function loadSession(): Promise<User | null> {
  if (session.checked) return session.user
  if (!mayHaveSession()) {
    session.checked = true
    return null
  }
  try {
    const me = await get<Me>('/api/v1/auth/me')
    setCsrfToken(me.csrf_token)
    session.user = me.user
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) throw e
    session.user = null
    remember(false)
  } finally {
    session.checked = true
  }
  return session.user
}

export async function login(username: string, password: string): Promise<User> {
  const r = await post<Me>('/api/v1/auth/login', { username, password })
  setCsrfToken(r.csrf_token)
  session.user = r.user
  session.checked = true
  remember(true)
  return r.user
}

export async function logout(): Promise<void> {
  try {
    await post('/api/v1/auth/logout')
  } finally {
    setCsrfToken('')
    session.user = null
    remember(false)
  }
}
