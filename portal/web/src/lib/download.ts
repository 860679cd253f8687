// Downloads of files the API makes (XLSX exports): fetched with the session so that a refusal
// shows as a message instead of a saved error page, then handed to the browser under the server's name.

import { toApiError } from './api'

/** The file name in a `Content-Disposition` header (`filename*=UTF-8''…` preferred), else `fallback`. */
export function filenameFrom(disposition: string | null | undefined, fallback: string): string {
  if (!disposition) return fallback
  const star = /filename\*\s*=\s*(?:UTF-8|utf-8)''([^;]+)/.exec(disposition)
  if (star) {
    try {
      return decodeURIComponent(star[1].trim())
    } catch {
      // A malformed encoding: try the plain name.
    }
  }
  const plain = /filename\s*=\s*"([^"]*)"|filename\s*=\s*([^;]+)/.exec(disposition)
  const name = (plain?.[1] ?? plain?.[2] ?? '').trim()
  // Never a path: only the last segment, as the server means it.
  const base = name.split(/[/\\]/).pop() ?? ''
  return base || fallback
}

/** GETs `path` and saves the body; throws the API's error (both languages) when refused. */
export async function download(path: string, fallback: string): Promise<string> {
  const resp = await fetch(path, { credentials: 'same-origin' })
  if (!resp.ok) {
    let body: unknown = null
    try {
      body = await resp.json()
    } catch {
      body = null
    }
    throw toApiError(resp.status, body)
  }
  const name = filenameFrom(resp.headers.get('content-disposition'), fallback)
  const url = URL.createObjectURL(await resp.blob())
  const a = document.createElement('a')
  a.href = url
  a.download = name
  document.body.appendChild(a)
  a.click()
  a.remove()
  setTimeout(() => URL.revokeObjectURL(url), 10_000)
  return name
}
