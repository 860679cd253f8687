import { describe, expect, it } from 'vitest'
import { formatPercent, formatSize } from './format'

describe('sizes', () => {
  it('uses bytes, KB and MB with one decimal', () => {
    expect(formatSize(532)).toBe('532 B')
    expect(formatSize(512)).toBe('512 B')
    expect(formatSize(12_595)).toBe('12.3 KB')
    expect(formatSize(2048)).toBe('2.0 KB')
    expect(formatSize(4.5 * 1024 * 1024)).toBe('4.5 MB')
    expect(formatSize(3 * 1024 * 1024)).toBe('3.0 MB')
  })
})

describe('percentages', () => {
  it('has one decimal, and a dash without a figure', () => {
    expect(formatPercent(0.975)).toBe('97.5%')
    expect(formatPercent(0.875)).toBe('87.5%')
    expect(formatPercent(null)).toBe('—')
    expect(formatPercent(undefined)).toBe('—')
    expect(formatPercent(Number.NaN)).toBe('—')
  })
})
