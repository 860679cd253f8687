import { describe, expect, it } from 'vitest'
import { channelBody, channelForm, deliveryTag, emptyChannelForm, parseRecipients, type Channel, type ChannelForm } from './channels'

const form = (over: Partial<ChannelForm>): ChannelForm => ({ ...emptyChannelForm(), name: '住建值班群', ...over })

const stored: Channel = {
  id: 7,
  department_id: 1,
  kind: 'dingtalk',
  kind_name_zh: '钉钉群机器人',
  name: '值班群',
  url: 'https://oapi.example/robot/send?access_token=***',
  secret_set: true,
  recipients: [],
  events: ['new_task'],
  enabled: true,
  created_by: 'admin',
  created_at: '2026-05-01T00:00:00Z',
  updated_at: '2026-05-01T00:00:00Z',
}

describe('channel form', () => {
  it('creates a signed webhook with the default events', () => {
    const r = channelBody(form({ url: ' http://10.0.0.5:9000/hook ', secret: 's3cret' }))
    expect(r).toEqual({
      ok: true,
      body: {
        kind: 'webhook',
        enabled: true,
        name: '住建值班群',
        url: 'http://10.0.0.5:9000/hook',
        events: ['new_task', 'reminder', 'supervision', 'escalation', 'red_warning'],
        secret: 's3cret',
      },
    })
  })

  it('creates an e-mail channel from a pasted list of addresses', () => {
    const r = channelBody(form({ kind: 'email', recipients: 'a@x.cn, b@x.cn；a@x.cn\nc@y.org' }))
    expect(r.ok && r.body.recipients).toEqual(['a@x.cn', 'b@x.cn', 'c@y.org'])
    expect(r.ok && 'url' in r.body).toBe(false)
  })

  it('refuses what the server refuses', () => {
    const errs = (f: Partial<ChannelForm>, existing?: Channel) => {
      const r = channelBody(form(f), existing)
      return r.ok ? {} : r.errors
    }
    expect(errs({ url: 'http://h/x', name: ' ' })).toEqual({ name: 'cfg.channels.err.name' })
    expect(errs({})).toEqual({ url: 'cfg.channels.err.urlRequired' })
    expect(errs({ url: 'ftp://h/x' })).toEqual({ url: 'cfg.channels.err.url' })
    expect(errs({ kind: 'email', recipients: '' })).toEqual({ recipients: 'cfg.channels.err.recipients' })
    expect(errs({ kind: 'email', recipients: 'not-an-address' })).toEqual({ recipients: 'cfg.channels.err.email' })
    expect(errs({ url: 'http://h/x', events: [] })).toEqual({ events: 'cfg.channels.err.events' })
    expect(errs({ url: 'http://h/x', secretAction: 'set', secret: '  ' })).toEqual({ secret: 'cfg.channels.err.secret' })
    // Switching an e-mail channel to a robot needs its URL.
    expect(errs({ kind: 'wecom' }, { ...stored, kind: 'email', url: null, recipients: ['a@x.cn'] })).toEqual({ url: 'cfg.channels.err.urlRequired' })
  })

  it('changes a channel without echoing its masked URL or its secret', () => {
    const f = channelForm(stored)
    expect(f.url).toBe('')
    expect(f.secret).toBe('')
    const keep = channelBody(f, stored)
    expect(keep).toEqual({ ok: true, body: { kind: 'dingtalk', enabled: true, name: '值班群', events: ['new_task'] } })
    const clear = channelBody({ ...f, secretAction: 'clear' }, stored)
    expect(clear.ok && clear.body.secret).toBeNull()
    const replace = channelBody({ ...f, url: 'https://oapi.example/robot/send?access_token=new' }, stored)
    expect(replace.ok && replace.body.url).toBe('https://oapi.example/robot/send?access_token=new')
  })

  it('never sends a secret for kinds without one', () => {
    const r = channelBody(form({ kind: 'wecom', url: 'https://q.example/send?key=k', secretAction: 'set', secret: 'x' }))
    expect(r.ok && 'secret' in r.body).toBe(false)
  })

  it('splits recipients on every separator people use', () => {
    expect(parseRecipients(' a@x.cn;b@x.cn，c@x.cn\n\n a@x.cn ')).toEqual(['a@x.cn', 'b@x.cn', 'c@x.cn'])
    expect(parseRecipients('')).toEqual([])
  })
})

describe('deliveries', () => {
  it('are coloured by state', () => {
    expect(deliveryTag('delivered')).toBe('success')
    expect(deliveryTag('failed')).toBe('danger')
    expect(deliveryTag('pending')).toBe('info')
  })
})
