// The browser scenario of issue 7, driven through Debian's chromium with playwright-core against a
// real `offsite demo` (started by tests/tests/browser.rs, which also plays the device).
//
//   OFFSITE_URL=http://127.0.0.1:PORT OFFSITE_DEVICE=<device id> OFFSITE_SHOTS=<dir> node e2e/scenario.mjs
//
// Protocol with the Rust side: this script prints `READY wall` once the monitor's wall is live;
// the test then publishes the anomaly. Later `READY camera`: the test's camera raises crowding
// with a snapshot. Every step prints `STEP ...`; any failure prints `FAIL ...`,
// saves `<dir>/failure-*.png` and exits non-zero. Every page must load without console errors and
// no request may leave the app's origin.
import { mkdirSync } from 'node:fs'
import { chromium } from 'playwright-core'

const BASE = mustEnv('OFFSITE_URL')
const DEVICE = mustEnv('OFFSITE_DEVICE')
// A hall camera's agent at the same object; the test publishes its crowding event on `READY camera`.
const CAMERA_DEVICE = mustEnv('OFFSITE_CAMERA_DEVICE')
const SHOTS = mustEnv('OFFSITE_SHOTS')
const CHROMIUM = process.env.OFFSITE_CHROMIUM || '/usr/bin/chromium'
const PASSWORD = 'Demo@2026'
// The department responsible for the device's object (demo-site-01, a construction site: 住建局)
// and its handler account.
const DEPARTMENT = '住建局'
const HANDLER = 'handler1'
const PHONE_WIDTH = 390
const TIMEOUT = 30_000

function mustEnv(name) {
  const v = process.env[name]
  if (!v) {
    console.error(`FAIL ${name} is not set`)
    process.exit(2)
  }
  return v
}

mkdirSync(SHOTS, { recursive: true })
const origin = new URL(BASE).origin
/** Problems seen on any page: console errors, page errors, foreign or failed requests. */
const problems = []
let current = null

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  // playwright gives every launch a fresh temporary profile (--user-data-dir).
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
  ],
})

/** A fresh browser context (its own cookies and storage) watched for problems. */
async function person(label, width = 1440) {
  // An English browser: the first visit must still be Chinese. Reduced motion: charts draw at once.
  const context = await browser.newContext({ viewport: { width, height: 900 }, locale: 'en-US', reducedMotion: 'reduce' })
  context.setDefaultTimeout(TIMEOUT)
  const page = await context.newPage()
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`[${label}] console error on ${page.url()}: ${m.text()}`)
  })
  page.on('pageerror', (e) => problems.push(`[${label}] page error on ${page.url()}: ${e.message}`))
  page.on('request', (r) => {
    const u = new URL(r.url())
    if (u.protocol !== 'data:' && u.protocol !== 'blob:' && u.origin !== origin) {
      problems.push(`[${label}] request to another host: ${r.url()}`)
    }
  })
  page.on('requestfailed', (r) => {
    const why = r.failure()?.errorText ?? ''
    // Leaving a page aborts its live stream and pending requests: not a fault.
    if (why.includes('ERR_ABORTED')) return
    problems.push(`[${label}] request failed: ${r.method()} ${r.url()} ${why}`)
  })
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`[${label}] HTTP ${r.status()} for ${r.request().method()} ${r.url()}`)
  })
  current = page
  return { context, page }
}

function step(what) {
  console.log(`STEP ${what}`)
}

/** Fails the run if anything went wrong on the pages so far. */
function clean(where) {
  if (problems.length) throw new Error(`${where}:\n  ${problems.join('\n  ')}`)
}

async function shot(page, name) {
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true })
}

async function login(page, user) {
  await page.goto(`${BASE}/`)
  await page.locator('input[name=username]').fill(user)
  await page.locator('input[name=password]').fill(PASSWORD)
  await page.locator('button[type=submit]').click()
  await page.waitForURL((u) => !['/', '/login'].includes(new URL(u).pathname))
}

/** The page is no wider than the phone: nothing makes the whole page scroll sideways. */
async function fitsPhone(page, where) {
  const width = await page.evaluate(() => document.documentElement.scrollWidth)
  if (width > PHONE_WIDTH) throw new Error(`${where} is ${width}px wide at a ${PHONE_WIDTH}px viewport`)
}

/** A text box: Element Plus puts the attributes of <el-input> on its inner input or textarea. */
function field(page, name) {
  return page.locator(`input[data-test="${name}"], textarea[data-test="${name}"]`)
}

/** Runs a task action from the detail page (opening its dialog when it asks for input). */
async function taskAction(page, action, fill = {}) {
  await page.locator(`[data-test=action-${action}]`).click()
  if (Object.keys(fill).length) {
    for (const [name, text] of Object.entries(fill)) {
      await field(page, `dialog-${name}`).fill(text)
    }
    await page.locator('[data-test=dialog-confirm]').click()
  }
}

async function expectState(page, zh) {
  await page.locator('[data-test=task-state]', { hasText: zh }).waitFor()
}

try {
  // 1. The login page: Chinese at `/` for a first visit, without console errors.
  step('login page')
  const monitor = await person('monitor')
  let page = monitor.page
  await page.goto(`${BASE}/`)
  await page.getByRole('heading', { name: '用户登录' }).waitFor()
  if ((await page.locator('html').getAttribute('lang')) !== 'zh-CN') throw new Error('the page is not marked zh-CN')
  await page.waitForLoadState('networkidle')
  clean('login page')
  await shot(page, 'login')

  // 2. The monitor's wall, live; the anomaly arrives without a reload.
  step('wall')
  await login(page, 'monitor')
  await page.waitForURL('**/wall')
  await page.locator('[data-test=live-state]', { hasText: '实时连接正常' }).waitFor()
  let navigations = 0
  page.on('framenavigated', (f) => {
    if (f === page.mainFrame()) navigations++
  })
  console.log('READY wall')
  const link = page.locator('[data-test=live-list] li', { hasText: DEVICE }).locator('[data-test=warning-link]').first()
  await link.waitFor({ timeout: 90_000 })
  if (navigations !== 0) throw new Error('the wall reloaded to show the warning')
  await page.waitForLoadState('networkidle').catch(() => undefined)
  await shot(page, 'wall')
  clean('wall')

  // 3. The warning detail: evidence chart, then dispatch to the responsible department.
  step('warning detail')
  await link.click()
  await page.waitForURL('**/warnings/*')
  await page.locator('[data-test=warning-facts]').waitFor()
  await page.locator('[data-test=evidence-chart] canvas').first().waitFor()
  await shot(page, 'warning-detail')
  step('dispatch')
  await page.locator('[data-test=dispatch]').click()
  await page.locator('[data-test=lead-department]').click()
  await page.locator('.el-select-dropdown__item:visible', { hasText: DEPARTMENT }).first().click()
  await page.locator('[data-test=dispatch-confirm]').click()
  await page.waitForURL(/\/tasks\/\d+$/)
  const taskId = new URL(page.url()).pathname.split('/').pop()
  await expectState(page, '待签收')
  console.log(`TASK ${taskId}`)
  clean('dispatch')
  await monitor.context.close()

  // 4. The department's handler, on a phone: task desk, sign for, start, feed back.
  step('handler on a phone')
  const handler = await person('handler', PHONE_WIDTH)
  page = handler.page
  await login(page, HANDLER)
  await page.waitForURL('**/tasks')
  await page.locator('[data-test=task-list] .task').first().waitFor()
  await page.waitForLoadState('networkidle')
  await fitsPhone(page, 'the task desk')
  await shot(page, 'tasks-phone')
  await page.locator(`[data-test=task-list] [data-task-id="${taskId}"]`).click()
  await page.waitForURL(`**/tasks/${taskId}`)
  await expectState(page, '待签收')
  await fitsPhone(page, 'the task detail')
  step('sign for')
  await taskAction(page, 'sign')
  await expectState(page, '已签收')
  step('start')
  await taskAction(page, 'start')
  await expectState(page, '办理中')
  step('feedback')
  await taskAction(page, 'feedback', { text: '已到现场核查，责令工地立即洒水降尘并覆盖裸土，复测 PM10 已达标。' })
  await expectState(page, '待审核')
  await fitsPhone(page, 'the task detail after feedback')
  await shot(page, 'task-phone')
  clean('handler')
  await handler.context.close()

  // 5. The reviewer approves; the task shows closed.
  step('reviewer approves')
  const reviewer = await person('reviewer')
  page = reviewer.page
  await login(page, 'reviewer')
  await page.goto(`${BASE}/tasks/${taskId}`)
  await expectState(page, '待审核')
  await taskAction(page, 'approve', { note: '整改到位，同意办结。' })
  await expectState(page, '已办结')
  await shot(page, 'task-closed')
  clean('reviewer')
  await reviewer.context.close()

  // 6. The audit administrator finds every step in the audit trail.
  step('audit trail')
  const auditor = await person('auditor')
  page = auditor.page
  await login(page, 'auditor')
  await page.waitForURL('**/audit')
  await field(page, 'audit-entity').fill('task')
  await field(page, 'audit-entity-id').fill(taskId)
  await page.locator('[data-test=audit-search]').click()
  const want = ['task.dispatch', 'task.signed', 'task.started', 'task.feedback', 'task.closed']
  const cells = page.locator('[data-test=audit-action-cell]')
  await page.waitForFunction(
    (n) => document.querySelectorAll('[data-test=audit-action-cell]').length >= n,
    want.length,
  )
  const actions = await cells.allTextContents()
  const missing = want.filter((a) => !actions.map((x) => x.trim()).includes(a))
  if (missing.length) throw new Error(`the audit trail of task ${taskId} lacks ${missing.join(', ')}: has ${actions.join(', ')}`)
  const actors = await page.locator('[data-test=audit-table] tbody').textContent()
  for (const who of ['monitor', HANDLER, 'reviewer']) {
    if (!actors?.includes(who)) throw new Error(`the audit trail does not name ${who}`)
  }
  await shot(page, 'audit')
  clean('audit')
  await auditor.context.close()

  // 7. The public: a complaint gets a tracking number whose page shows its status.
  step('public complaint')
  const citizen = await person('public', PHONE_WIDTH)
  page = citizen.page
  await page.goto(`${BASE}/public/complaint`)
  await page.locator('[data-test=complaint-form]').waitFor()
  await page.locator('[data-test=service]').click()
  await page.locator('.el-select-dropdown__item:visible').first().click()
  await field(page, 'description').fill('示范大道工地夜间施工噪声很大，渣土车未覆盖，扬尘严重。')
  await field(page, 'address').fill('杭州市西湖区示范大道102号')
  await fitsPhone(page, 'the complaint form')
  await shot(page, 'public-complaint')
  await page.locator('[data-test=submit]').click()
  const no = (await page.locator('[data-test=tracking-no]').textContent())?.trim()
  if (!/^TS\d{8}[0-9A-Z]{10}$/.test(no ?? '')) throw new Error(`no tracking number: ${no}`)
  await shot(page, 'public-complaint-done')
  await page.locator('[data-test=track-link]').click()
  await page.waitForURL(`**/public/track/${no}`)
  await page.locator('[data-test=track-status]').waitFor()
  console.log(`COMPLAINT ${no} ${(await page.locator('[data-test=track-status]').textContent())?.trim()}`)
  await fitsPhone(page, 'the tracking page')
  await shot(page, 'public-track')
  clean('public')
  await citizen.context.close()

  // 8. A tour of every area each kind of account opens, administration pages included: each loads
  // without a console error, a failed request or a refusal (the menu only offers what the role may
  // use), and the handler's pages fit a phone.
  const tours = [
    { user: 'admin', width: 1440, paths: ['/wall', '/tasks', '/cases', '/devices', `/devices/${DEVICE}`, '/cameras', '/oversight', '/notifications', '/account'], admin: true },
    { user: 'secadmin', width: 1440, paths: ['/account'], admin: true },
    { user: 'monitor', width: 1440, paths: ['/cases', '/devices', '/cameras', '/oversight'], admin: true },
    { user: 'leader1', width: 1440, paths: ['/wall', '/tasks', '/oversight'] },
    { user: 'resup', width: 1440, paths: ['/oversight', '/tasks?overdue=true'] },
    { user: HANDLER, width: PHONE_WIDTH, paths: ['/tasks', '/cases', '/devices', `/devices/${DEVICE}`, '/notifications', '/account'] },
  ]
  for (const tour of tours) {
    step(`tour as ${tour.user}`)
    const who = await person(tour.user, tour.width)
    page = who.page
    await login(page, tour.user)
    const visit = async (path, name) => {
      await page.goto(`${BASE}${path}`)
      await page.locator('main, .main, .el-main').first().waitFor()
      // Live pages keep a stream open, so "idle" may never come: give them a moment instead.
      await page.waitForLoadState('networkidle', { timeout: 8_000 }).catch(() => undefined)
      if (tour.width === PHONE_WIDTH) await fitsPhone(page, `${path} for ${tour.user}`)
      await shot(page, `tour-${tour.user}-${name}`)
      clean(`${path} for ${tour.user}`)
    }
    for (const path of tour.paths) {
      await visit(path, path.replace(DEVICE, 'device').replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '') || 'home')
    }
    if (tour.admin) {
      await page.goto(`${BASE}/admin`)
      await page.locator('.admin-nav .el-menu-item').first().waitFor()
      const adminPaths = await page.evaluate(() =>
        [...document.querySelectorAll('.admin-nav .el-menu-item')].map((e) => e.textContent?.trim() ?? ''),
      )
      if (adminPaths.length === 0) throw new Error(`no administration pages for ${tour.user}`)
      for (let i = 0; i < adminPaths.length; i++) {
        await page.locator('.admin-nav .el-menu-item').nth(i).click()
        await page.waitForLoadState('networkidle', { timeout: 8_000 }).catch(() => undefined)
        await shot(page, `tour-${tour.user}-admin-${i + 1}`)
        clean(`administration page ${adminPaths[i]} for ${tour.user}`)
      }
      console.log(`ADMIN ${tour.user}: ${adminPaths.join(', ')}`)
    }
    if (tour.user === 'admin') {
      // A register round trip through the forms: add a department, rename it, delete it.
      step('admin adds, renames and deletes a department')
      await page.goto(`${BASE}/admin/departments`)
      const rows = page.locator('[data-test=department-table] .el-table__row')
      await rows.first().waitFor()
      await page.locator('[data-test=department-add]').click()
      await field(page, 'department-code').fill('e2e-dept')
      await field(page, 'department-name').fill('浏览器测试部门')
      await page.locator('[data-test=department-save]').click()
      const row = rows.filter({ hasText: 'e2e-dept' })
      await row.waitFor()
      await row.locator('[data-test=department-edit]').click()
      await field(page, 'department-name').fill('浏览器测试部门（改）')
      await page.locator('[data-test=department-save]').click()
      await rows.filter({ hasText: '浏览器测试部门（改）' }).waitFor()
      await row.locator('[data-test=department-delete]').click()
      await page.locator('.el-message-box__btns .el-button--primary').click()
      await row.waitFor({ state: 'detached' })
      clean('department round trip')
    }
    await who.context.close()
  }
  step('tour of the public portal')
  const visitor = await person('public')
  page = visitor.page
  await page.goto(`${BASE}/public`)
  await page.waitForLoadState('networkidle', { timeout: 8_000 }).catch(() => undefined)
  await shot(page, 'tour-public-home')
  clean('public home')
  await visitor.context.close()

  // 9. Video: a hall camera's crowding warning arrives on the wall with its snapshot, its detail page
  // shows the picture, the cameras page shows it with zone outlines, and the monitor draws a queue
  // zone on it and sends it to the camera.
  step('video warning')
  const watcher = await person('monitor-video')
  page = watcher.page
  await login(page, 'monitor')
  await page.waitForURL('**/wall')
  await page.locator('[data-test=live-state]', { hasText: '实时连接正常' }).waitFor()
  console.log('READY camera')
  const camLink = page.locator('[data-test=live-list] li', { hasText: CAMERA_DEVICE }).locator('[data-test=warning-link]').first()
  await camLink.waitFor({ timeout: 60_000 })
  await page.locator('[data-test=wall-snapshots] img').first().waitFor()
  await page.locator('[data-test=cameras-online]', { hasText: '/' }).waitFor()
  await shot(page, 'wall-video')
  await camLink.click()
  await page.waitForURL('**/warnings/*')
  await page.locator('[data-test=warning-snapshot]').waitFor()
  await page.waitForFunction(() => {
    const img = document.querySelector('[data-test=warning-snapshot]')
    return img instanceof HTMLImageElement && img.complete && img.naturalWidth > 0
  })
  await shot(page, 'warning-video')
  clean('video warning')
  step('zone editor')
  await page.goto(`${BASE}/cameras`)
  const card = page.locator('[data-test=camera-card]', { hasText: '浏览器测试大厅' })
  await card.locator('img').waitFor()
  await card.locator('[data-test=zone-overlay] polygon').first().waitFor()
  await card.locator('[data-test=camera-online]', { hasText: '在线' }).waitFor()
  await shot(page, 'cameras')
  await card.locator('[data-test=edit-zones]').click()
  await page.waitForURL('**/cameras/*/*')
  const canvas = page.locator('[data-test=zone-canvas]')
  await canvas.locator('img').waitFor()
  const box = await canvas.boundingBox()
  if (!box) throw new Error('the zone editor has no picture')
  for (const [x, y] of [[0.6, 0.2], [0.9, 0.2], [0.9, 0.8]]) await page.mouse.click(box.x + x * box.width, box.y + y * box.height)
  await field(page, 'zone-name').fill('排队区')
  await page.locator('[data-test=finish-zone]').click()
  await page.locator('[data-test=zone-list] li').nth(1).waitFor()
  await page.locator('[data-test=save-zones]').click()
  await page.locator('.el-message--success').waitFor()
  await shot(page, 'zone-editor')
  clean('zone editor')
  await watcher.context.close()

  console.log('PASS')
  await browser.close()
} catch (e) {
  console.log(`FAIL ${e instanceof Error ? e.stack ?? e.message : e}`)
  if (problems.length) console.log(`problems seen:\n  ${problems.join('\n  ')}`)
  if (current) {
    console.log(`at ${current.url()}`)
    await current.screenshot({ path: `${SHOTS}/failure.png`, fullPage: true }).catch(() => undefined)
  }
  await browser.close().catch(() => undefined)
  process.exit(1)
}
