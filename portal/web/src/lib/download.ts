// Downloads of files the API produces (CSV/XLSX exports, attachments). A plain link would follow
// the session cookie too, but an error would then be saved as a file or replace the page; fetching
// first lets the page show the server's message and save only a real file.
import { toApiError } from './api'

/**
 * The file name a `Content-Disposition` header gives (`filename*=UTF-8''…` preferred over
 * `filename="…"`), without any directory part; `fallback` when it gives none.
 */
export function filenameFromDisposition(header: string | null | undefined, fallback: string): string {
  if (!header) return fallback
  let name: string | null = null
  const extended = /filename\*\s*=\s*([^']*)'[^']*'([^;]+)/i.exec(header)
  if (extended) {
    try {
      name = decodeURIComponent(extended[2].trim().replace(/^"(.*)"$/, '$1'))
    } catch {
      name = null
    }
  }
  if (!name) {
    const plain = /filename\s*=\s*("((?:[^"\\]|\\.)*)"|[^;\s]+)/i.exec(header)
    if (plain) name = plain[2] !== undefined ? plain[2].replace(/\\(.)/g, '$1') : plain[1]
  }
  // Never let a server-sent name pick a directory.
  const base = name?.split(/[\\/]/).pop()?.trim()
  return base ? base : fallback
}

/** What a download fetched: the bytes and the name to save them under. */
export interface Fetched {
  blob: Blob
  filename: string
}

/**
 * GETs `path` with the session (a GET needs no CSRF token) and returns the body and its file name;
 * an error answer is thrown as an `ApiError`, like every other request.
 */
export async function fetchFile(path: string, fallbackName: string): Promise<Fetched> {
  const resp = await fetch(path, { credentials: 'same-origin' })
  if (!resp.ok) {
    let body: unknown = null
    try {
      body = JSON.parse(await resp.text())
    } catch {
      body = null
    }
    throw toApiError(resp.status, body)
  }
  const blob = await resp.blob()
  return { blob, filename: filenameFromDisposition(resp.headers.get('Content-Disposition'), fallbackName) }
}

/** Hands a blob to the browser to save as `filename`. */
export function saveBlob(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob)
  const a = document.createElement('a')
  a.href = url
  a.download = filename
  a.style.display = 'none'
  document.body.appendChild(a)
  a.click()
  a.remove()
  // Revoked later: some browsers start reading the URL only after click() returns.
  setTimeout(() => URL.revokeObjectURL(url), 10_000)
}

/** Fetches `path` and saves it; the saved name is the server's, or `fallbackName`. */
export async function download(path: string, fallbackName: string): Promise<string> {
  const f = await fetchFile(path, fallbackName)
  saveBlob(f.blob, f.filename)
  return f.filename
}
