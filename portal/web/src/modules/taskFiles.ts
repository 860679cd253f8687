import type { PageModule } from './types'

// Messages of a task's comments and attachments (components/TaskAttachments.vue, TaskComment.vue,
// AttachmentPicker.vue on the task detail page, routed in router.ts).
const zh = {
  taskFiles: {
    attachments: '附件',
    none: '暂无附件',
    upload: '上传附件',
    uploading: '正在上传 {name}…',
    uploaded: '已上传 {name}',
    rules: '支持 JPEG、PNG、PDF、DOCX、XLSX，单个文件不超过 20 MB',
    name: '文件名',
    size: '大小',
    by: '上传人',
    at: '上传时间',
    download: '下载',
    problem: {
      empty: '{name}：文件为空',
      type: '{name}：仅支持 JPEG、PNG、PDF、DOCX、XLSX 文件',
      size: '{name}：文件超过 20 MB',
    },
    comment: '添加意见',
    commentPlaceholder: '填写办理意见或补充说明（最多 5000 字）',
    commentSend: '发表',
    commentSent: '意见已记录',
    commentBad: '请填写 1 至 5000 字的内容',
    pick: '添加附件',
    remove: '移除',
    feedbackFailedFile: '附件 {name} 上传失败，反馈未提交：{reason}',
  },
}

const en: typeof zh = {
  taskFiles: {
    attachments: 'Attachments',
    none: 'No attachments',
    upload: 'Upload',
    uploading: 'Uploading {name}…',
    uploaded: 'Uploaded {name}',
    rules: 'JPEG, PNG, PDF, DOCX or XLSX, at most 20 MB each',
    name: 'File',
    size: 'Size',
    by: 'By',
    at: 'Uploaded',
    download: 'Download',
    problem: {
      empty: '{name}: the file is empty',
      type: '{name}: only JPEG, PNG, PDF, DOCX and XLSX files',
      size: '{name}: larger than 20 MB',
    },
    comment: 'Add a comment',
    commentPlaceholder: 'Notes on the handling (at most 5000 characters)',
    commentSend: 'Post',
    commentSent: 'Comment recorded',
    commentBad: 'Write 1 to 5000 characters',
    pick: 'Add files',
    remove: 'Remove',
    feedbackFailedFile: 'Uploading {name} failed, the feedback was not sent: {reason}',
  },
}

export default { routes: [], messages: { zh, en } } satisfies PageModule
