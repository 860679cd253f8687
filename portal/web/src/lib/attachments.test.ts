import { describe, expect, it } from 'vitest'
import {
  ATTACHMENT_MAX_BYTES,
  attachmentForm,
  attachmentProblem,
  attachmentUrl,
  canWriteOnTask,
  COMMENT_MAX,
  commentText,
  FeedbackStepError,
  feedbackWithFiles,
} from './attachments'

describe('attachments', () => {
  it('take JPEG, PNG, PDF, DOCX and XLSX up to 20 MiB', () => {
    for (const name of ['a.jpg', 'b.JPEG', 'c.png', '现场.pdf', 'd.docx', 'e.XLSX']) {
      expect(attachmentProblem({ name, size: 10 })).toBeNull()
    }
    expect(attachmentProblem({ name: 'x.pdf', size: ATTACHMENT_MAX_BYTES })).toBeNull()
    expect(attachmentProblem({ name: 'x.pdf', size: ATTACHMENT_MAX_BYTES + 1 })).toBe('size')
    expect(attachmentProblem({ name: 'x.exe', size: 10 })).toBe('type')
    expect(attachmentProblem({ name: 'pdf', size: 10 })).toBe('type')
    expect(attachmentProblem({ name: 'x.doc', size: 10 })).toBe('type')
    expect(attachmentProblem({ name: 'x.pdf', size: 0 })).toBe('empty')
  })

  it('are sent as one file field and fetched by id', async () => {
    const f = attachmentForm(new Blob(['%PDF-1.4']), '报告.pdf')
    const sent = f.get('file') as File
    expect(sent.name).toBe('报告.pdf')
    expect(await sent.text()).toBe('%PDF-1.4')
    expect(attachmentUrl(7, 3)).toBe('/api/v1/tasks/7/attachments/3')
  })

})

describe('writing on a task', () => {
  it('is for everyone who works tasks, not re-supervision', () => {
    expect(canWriteOnTask(['handler'])).toBe(true)
    expect(canWriteOnTask(['reviewer'])).toBe(true)
    expect(canWriteOnTask(['resupervision'])).toBe(false)
    expect(canWriteOnTask(['audit_admin'])).toBe(false)
  })

  it('takes comments of 1 to 5000 characters, trimmed', () => {
    expect(commentText('  已到现场核查  ')).toBe('已到现场核查')
    expect(commentText('   ')).toBeNull()
    expect(commentText('字'.repeat(COMMENT_MAX))).toHaveLength(COMMENT_MAX)
    expect(commentText('字'.repeat(COMMENT_MAX + 1))).toBeNull()
  })
})

describe('feedback with files', () => {
  const file = (n: string) => new File(['x'], n)

  it('uploads every file, in order, before the feedback', async () => {
    const log: string[] = []
    await feedbackWithFiles('已整改', [file('a.jpg'), file('b.pdf')], {
      upload: async (f) => log.push(`upload ${f.name}`),
      feedback: async (t) => log.push(`feedback ${t}`),
    })
    expect(log).toEqual(['upload a.jpg', 'upload b.pdf', 'feedback 已整改'])
  })

  it('sends no feedback when an upload fails, and names the file', async () => {
    const log: string[] = []
    const refused = new Error('413')
    const err = await feedbackWithFiles('已整改', [file('a.jpg'), file('big.pdf'), file('c.png')], {
      upload: async (f) => {
        if (f.name === 'big.pdf') throw refused
        log.push(`upload ${f.name}`)
      },
      feedback: async (t) => log.push(`feedback ${t}`),
    }).catch((e: unknown) => e)
    expect(log).toEqual(['upload a.jpg'])
    expect(err).toBeInstanceOf(FeedbackStepError)
    expect((err as FeedbackStepError).file).toBe('big.pdf')
    expect((err as FeedbackStepError).cause).toBe(refused)
  })

  it('reports a refused feedback as such', async () => {
    const err = await feedbackWithFiles('x', [], {
      upload: async () => undefined,
      feedback: async () => {
        throw new Error('409')
      },
    }).catch((e: unknown) => e)
    expect((err as FeedbackStepError).file).toBeNull()
  })
})
