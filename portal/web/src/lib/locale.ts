// zh-CN on the first visit whatever the browser says; English only when the person chose it here.

export type Locale = 'zh-CN' | 'en'
export const LOCALE_KEY = 'offsite.locale'

export function savedLocale(storage: Pick<Storage, 'getItem'> | undefined): Locale {
  try {
    return storage?.getItem(LOCALE_KEY) === 'en' ? 'en' : 'zh-CN'
  } catch {
    return 'zh-CN'
  }
}
