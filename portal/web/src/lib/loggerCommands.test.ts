import { describe, expect, it } from 'vitest'
import { commandAction, commandState, intervalOk, loggerLogin, replyText, type LoggerCommand } from './loggerCommands'

function cmd(over: Partial<LoggerCommand>): LoggerCommand {
  return {
    id: 'h1-1',
    kind: 'sync_clock',
    body: {},
    created_by: 'sys',
    created_at: '2026-11-27T02:00:00Z',
    acked_at: null,
    ok: null,
    error: null,
    state: null,
    ...over,
  }
}

describe('logger commands', () => {
  it('accepts only whole intervals within 30..3600 s', () => {
    expect([30, 60, 3600].map(intervalOk)).toEqual([true, true, true])
    expect([29, 3601, 60.5, null, undefined, NaN].map(intervalOk)).toEqual([false, false, false, false, false, false])
  })

  it('tells pending, done and refused commands apart', () => {
    expect(commandState(cmd({}))).toBe('pending')
    expect(commandState(cmd({ acked_at: '2026-11-27T02:00:01Z', ok: true }))).toBe('done')
    expect(commandState(cmd({ acked_at: '2026-11-27T02:00:01Z', ok: false, error: 'QnRtn 2' }))).toBe('refused')
  })

  it('names what was asked', () => {
    expect(commandAction(cmd({}))).toEqual({ key: 'syncClock' })
    expect(commandAction(cmd({ kind: 'set_interval', body: { seconds: 60 } }))).toEqual({ key: 'setInterval', seconds: 60 })
    expect(commandAction(cmd({ kind: 'set_interval', body: {} }))).toEqual({ key: 'other' })
    expect(commandAction(cmd({ kind: 'configure' }))).toEqual({ key: 'other' })
  })

  it('shows the 9011 and 9012 answers as the standard names them', () => {
    expect(replyText(null)).toBe('')
    expect(replyText({})).toBe('')
    expect(replyText({ qn: 'x', qn_rtn: 2 })).toBe('9011 QnRtn=2')
    expect(replyText({ qn: 'x', qn_rtn: 1, exe_rtn: 1 })).toBe('9011 QnRtn=1 · 9012 ExeRtn=1')
  })

  it('checks a logger\'s MN and PW as the platform does', () => {
    expect(loggerLogin({ mn: ' SQ0000000000000000000001 ', pw: '123456' })).toEqual({
      ok: true,
      hj212: { mn: 'SQ0000000000000000000001', pw: '123456' },
    })
    expect(loggerLogin({ mn: 'has space', pw: '1' })).toEqual({ ok: false, field: 'mn' })
    expect(loggerLogin({ mn: '', pw: '1' })).toEqual({ ok: false, field: 'mn' })
    expect(loggerLogin({ mn: 'a'.repeat(65), pw: '1' })).toEqual({ ok: false, field: 'mn' })
    for (const pw of ['', 'a;b', 'a=b', 'a b', '密码', 'x'.repeat(65)]) {
      expect(loggerLogin({ mn: 'SQ01', pw })).toEqual({ ok: false, field: 'pw' })
    }
  })
})
