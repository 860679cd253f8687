import type { PageModule } from './types'

// The audit administrator's search over the audit trail (GET /api/v1/audit).
const zh = {
  audit: {
    title: '审计日志',
    hint: '系统中每一次变更（人员操作与系统自动处理）都记录在防篡改的审计链中。',
    actor: '操作人',
    actorHint: '用户名，或 system:组件',
    action: '操作',
    actionHint: '如 task.sign，或前缀 task.*',
    entity: '对象类型',
    entityId: '对象编号',
    range: '时间范围',
    from: '开始时间',
    to: '结束时间',
    search: '查询',
    reset: '重置',
    at: '时间',
    ip: '来源地址',
    seq: '序号',
    changed: '变更字段',
    before: '变更前',
    after: '变更后',
    hash: '链哈希',
    details: '详情',
    empty: '没有符合条件的审计记录',
    zone: '时间均为北京时间（Asia/Shanghai）',
  },
}
const en: typeof zh = {
  audit: {
    title: 'Audit trail',
    hint: 'Every change, by a person or by the system, is recorded in a tamper-evident audit chain.',
    actor: 'Actor',
    actorHint: 'user name, or system:component',
    action: 'Action',
    actionHint: 'e.g. task.sign, or a prefix task.*',
    entity: 'Entity',
    entityId: 'Entity id',
    range: 'Time range',
    from: 'From',
    to: 'To',
    search: 'Search',
    reset: 'Reset',
    at: 'Time',
    ip: 'From address',
    seq: 'Seq.',
    changed: 'Changed fields',
    before: 'Before',
    after: 'After',
    hash: 'Chain hash',
    details: 'Details',
    empty: 'No audit events match',
    zone: 'Times are China Standard Time (Asia/Shanghai)',
  },
}

export default {
  routes: [{ path: 'audit', name: 'audit', component: () => import('../views/audit/AuditView.vue') }],
  messages: { zh, en },
} satisfies PageModule
