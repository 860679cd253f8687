// The one way the UI talks to the portal: same origin, the session cookie, and the CSRF header on
// every state-changing request (portal/src/routes/auth.rs). Errors carry both languages.

export interface ErrorBody {
  error?: { code?: string; message?: string; message_zh?: string }
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly messageEn: string,
    readonly messageZh: string,
  ) {
    super(messageEn || messageZh)
  }
}

/** The error text for the current language, falling back to the other one, then to the status. */
export function errorMessage(e: unknown, locale: string): string {
  if (e instanceof ApiError) {
    const [first, second] = locale === 'en' ? [e.messageEn, e.messageZh] : [e.messageZh, e.messageEn]
    return first || second || (locale === 'en' ? `request failed (HTTP ${e.status})` : `请求失败（HTTP ${e.status}）`)
  }
  return locale === 'en' ? 'the server cannot be reached' : '无法连接服务器'
}

/** Reads the portal's JSON error shape; anything else becomes a bare status. */
export function toApiError(status: number, body: unknown): ApiError {
  const err = (body as ErrorBody | null)?.error
  return new ApiError(status, err?.code ?? `http_${status}`, err?.message ?? '', err?.message_zh ?? '')
}

let csrfToken = ''

export function setCsrfToken(t: string): void {
  csrfToken = t
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' }
  // A FormData body goes as multipart: the browser writes its Content-Type with the boundary.
  const multipart = typeof FormData !== 'undefined' && body instanceof FormData
  // A Blob (a chosen file) goes as it is: the import endpoints read the raw CSV or XLSX bytes.
  const raw = typeof Blob !== 'undefined' && body instanceof Blob
  if (raw) headers['Content-Type'] = (body as Blob).type || 'application/octet-stream'
  else if (body !== undefined && !multipart) headers['Content-Type'] = 'application/json'
  if (method !== 'GET' && csrfToken) headers['X-CSRF-Token'] = csrfToken
  const resp = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : multipart || raw ? (body as BodyInit) : JSON.stringify(body),
  })
  const text = await resp.text()
  let parsed: unknown = null
  if (text) {
    try {
      parsed = JSON.parse(text)
    } catch {
      parsed = null
    }
  }
  if (!resp.ok) throw toApiError(resp.status, parsed)
  return parsed as T
}

export const get = <T>(path: string) => api<T>('GET', path)
export const post = <T>(path: string, body?: unknown) => api<T>('POST', path, body ?? {})
/** A multipart POST (forms with files). */
export const postForm = <T>(path: string, form: FormData) => api<T>('POST', path, form)
/** A POST whose body is a file's bytes (CSV/XLSX imports), with the session's CSRF header. */
export const postFile = <T>(path: string, file: Blob) => api<T>('POST', path, file)

/** `?a=1&b=x` from the given, non-empty values. */
export function query(params: Record<string, string | number | boolean | null | undefined>): string {
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== '') q.set(k, String(v))
  }
  const s = q.toString()
  return s ? `?${s}` : ''
}
