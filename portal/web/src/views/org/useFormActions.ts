// The two moves every register page makes: send a checked form (a refusal naming a field goes under
// that field, anything else above the form) and delete after asking (the server says why a delete
// is refused, e.g. a region that still has objects).
import type { Ref } from 'vue'
import { useI18n } from 'vue-i18n'
import { ElMessage, ElMessageBox } from 'element-plus'
import { api, errorMessage } from '../../lib/api'
import { fieldProblem } from '../../lib/fieldErrors'
import type { FormProblems } from '../../lib/registers'

export interface FormState {
  problems: Ref<FormProblems>
  formError: Ref<string>
  saving: Ref<boolean>
}

export function useFormActions() {
  const { t, locale } = useI18n()

  /**
   * Runs `send` unless `checked` found problems; on success says so and runs `done`. Returns
   * whether it was sent.
   */
  async function submit(
    s: FormState,
    fields: readonly string[],
    checked: FormProblems,
    send: () => Promise<unknown>,
    done: () => Promise<void> | void,
  ): Promise<boolean> {
    s.problems.value = checked
    s.formError.value = ''
    if (Object.keys(checked).length) return false
    s.saving.value = true
    try {
      await send()
      await done()
      return true
    } catch (e) {
      const p = fieldProblem(e, [...fields], locale.value)
      if (p) s.problems.value = { [p.field]: p.message }
      else s.formError.value = errorMessage(e, locale.value)
      return false
    } finally {
      s.saving.value = false
    }
  }

  /** Asks whether to delete `name`, DELETEs `path`, then runs `reload`. */
  async function removeAfterAsking(name: string, path: string, reload: () => Promise<void>): Promise<void> {
    try {
      await ElMessageBox.confirm(t('org.common.deleteConfirm', { name }), t('org.common.delete'), {
        confirmButtonText: t('org.common.confirm'),
        cancelButtonText: t('org.common.cancel'),
        type: 'warning',
      })
    } catch {
      return
    }
    try {
      await api('DELETE', path)
      ElMessage.success(t('org.common.deleted'))
      await reload()
    } catch (e) {
      ElMessage.error(errorMessage(e, locale.value))
    }
  }

  return { submit, removeAfterAsking }
}
