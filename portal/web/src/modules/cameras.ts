import type { PageModule } from './types'

// 视频监控: no camera API yet (video lands with a later issue); the page says so honestly.
const zh = {
  cam: {
    title: '视频监控',
    none: '尚未接入摄像头',
    noneDetail: '视频接入将在后续版本提供。接入后，这里会列出各监管对象的摄像头、在线状态和最新抓拍画面。',
    name: '名称',
    object: '监管对象',
    health: '状态',
    snapshot: '最新抓拍',
  },
}
const en: typeof zh = {
  cam: {
    title: 'Cameras',
    none: 'No camera is connected yet',
    noneDetail: 'Video arrives in a later release. Once cameras are connected, this page lists them per regulated object with their health and latest snapshot.',
    name: 'Name',
    object: 'Regulated object',
    health: 'Health',
    snapshot: 'Latest snapshot',
  },
}

export default {
  routes: [{ path: 'cameras', name: 'cameras', component: () => import('../views/cameras/CamerasView.vue') }],
  messages: { zh, en },
} satisfies PageModule
