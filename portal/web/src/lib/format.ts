// Numbers as people read them, shared by every page.

/** `532 B`, `12.3 KB`, `4.5 MB`. */
export function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`
}

/** A ratio as `87.5%` (one decimal); `—` without a figure. */
export function formatPercent(ratio: number | null | undefined): string {
  if (ratio === null || ratio === undefined || !Number.isFinite(ratio)) return '—'
  return `${(Math.round(ratio * 1000) / 10).toFixed(1)}%`
}
