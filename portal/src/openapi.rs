//! The API's OpenAPI 3.1 description (`/api/openapi.json`) and a browsable UI (`/api/docs`,
//! Swagger UI bundled into the binary: nothing is loaded from the internet).
//!
//! The document is generated from [`ENDPOINTS`], one row per operation; a test checks the table
//! against the router in `lib.rs`, so an endpoint cannot be added without being described.

use serde_json::{json, Map, Value};

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No login (health, metrics, login itself, public complaint intake).
    Public,
    /// A session or API token; roles and scope decide further (see each description).
    Login,
}

/// (method, path, tag, summary in Chinese, summary in English, access, roles note)
pub type Endpoint = (&'static str, &'static str, &'static str, &'static str, &'static str, Access, &'static str);

use Access::{Login, Public};

pub const ENDPOINTS: &[Endpoint] = &[
    ("get", "/healthz", "system", "健康检查", "Health check", Public, ""),
    ("get", "/readyz", "system", "就绪检查（数据库可达，未在停止中）", "Readiness: the database answers and the portal is not shutting down (503 otherwise)", Public, ""),
    ("get", "/metrics", "system", "Prometheus 指标", "Prometheus metrics (bind to an internal interface in production)", Public, ""),
    ("post", "/api/v1/auth/login", "auth", "登录", "Log in: returns a bearer token and sets an HttpOnly session cookie", Public, "throttled after repeated failures"),
    ("post", "/api/v1/auth/logout", "auth", "退出登录", "Log out", Login, ""),
    ("get", "/api/v1/auth/me", "auth", "当前用户与 CSRF 令牌", "Who am I, and the session's CSRF token", Login, ""),
    ("post", "/api/v1/auth/password", "auth", "修改本人密码", "Change one's own password", Login, ""),
    ("get", "/api/v1/auth/tokens", "auth", "本人的 API 令牌", "The caller's own API tokens in force: id, name, created_at, last_used (never the secret; tokens last until revoked)", Login, ""),
    ("post", "/api/v1/auth/tokens", "auth", "创建个人 API 令牌", "Create a personal API token (shown once)", Login, ""),
    ("delete", "/api/v1/auth/tokens/{id}", "auth", "吊销个人 API 令牌", "Revoke a personal API token", Login, ""),
    ("get", "/api/v1/users", "users", "用户列表", "List accounts", Login, "security administrator"),
    ("post", "/api/v1/users", "users", "创建用户", "Create an account", Login, "security administrator"),
    ("put", "/api/v1/users/{id}/roles", "users", "设置用户角色", "Set an account's roles (not one's own)", Login, "security administrator"),
    ("post", "/api/v1/users/{id}/password", "users", "重置用户密码", "Reset an account's password (must change at next login)", Login, "security administrator"),
    ("put", "/api/v1/users/{id}/disabled", "users", "停用或启用用户", "Disable or enable an account", Login, "security administrator"),
    ("get", "/api/v1/audit", "audit", "查询审计日志", "Search the audit trail", Login, "audit administrator only"),
    ("get", "/api/v1/regions", "registers", "行政区划树", "Region tree", Login, ""),
    ("post", "/api/v1/regions", "registers", "新增或修改行政区划", "Create or update a region", Login, "system administrator"),
    ("get", "/api/v1/departments", "registers", "部门列表", "Departments", Login, ""),
    ("post", "/api/v1/departments", "registers", "新增部门", "Create a department", Login, "system administrator"),
    ("delete", "/api/v1/regions/{code}", "registers", "删除行政区划（无下级、对象和部门时）", "Delete a region (refused while it has sub-regions, objects or departments)", Login, "system administrator"),
    ("put", "/api/v1/departments/{id}", "registers", "修改部门", "Update a department's code, name and parent", Login, "system administrator"),
    ("delete", "/api/v1/departments/{id}", "registers", "删除部门（无下级部门和对象时）", "Delete a department (refused while it has sub-departments or objects)", Login, "system administrator"),
    ("put", "/api/v1/departments/{id}/regions", "registers", "设置部门管辖区域", "Set the regions a department covers", Login, "system administrator"),
    ("get", "/api/v1/objects", "registers", "监管对象列表", "Regulated objects (within the caller's scope)", Login, ""),
    ("post", "/api/v1/objects", "registers", "新增监管对象", "Create a regulated object", Login, "system administrator"),
    ("post", "/api/v1/objects/import", "registers", "导入监管对象（CSV/XLSX）", "Import objects from CSV or XLSX (recognised by content), with a per-row error report (?dry_run=true)", Login, "system administrator"),
    ("get", "/api/v1/objects/export", "registers", "导出监管对象（CSV/XLSX）", "Export objects as CSV, or XLSX with ?format=xlsx (within the caller's scope)", Login, ""),
    ("get", "/api/v1/objects/{id}", "registers", "监管对象详情", "A regulated object", Login, ""),
    ("put", "/api/v1/objects/{id}", "registers", "修改监管对象", "Update a regulated object", Login, "system administrator"),
    ("delete", "/api/v1/objects/{id}", "registers", "删除监管对象", "Delete a regulated object (no devices attached)", Login, "system administrator"),
    ("get", "/api/v1/catalog", "catalog", "监管事项目录（现行）", "The regulatory item catalog (current published versions)", Login, ""),
    ("get", "/api/v1/catalog/drafts", "catalog", "监管事项草稿", "Catalog drafts not yet published", Login, "system administrator"),
    ("post", "/api/v1/catalog/import", "catalog", "导入监管事项（CSV/XLSX）", "Import catalog items from CSV or XLSX (?publish=true)", Login, "system administrator"),
    ("get", "/api/v1/catalog/export", "catalog", "导出监管事项（CSV/XLSX）", "Export the catalog as CSV, or XLSX with ?format=xlsx", Login, ""),
    ("get", "/api/v1/catalog/{code}/history", "catalog", "事项版本历史", "Version history of an item", Login, ""),
    ("put", "/api/v1/catalog/{code}/draft", "catalog", "保存事项草稿", "Save a draft of an item", Login, "system administrator"),
    ("post", "/api/v1/catalog/{code}/publish", "catalog", "发布事项草稿", "Publish an item's draft", Login, "system administrator"),
    ("get", "/api/v1/devices", "devices", "设备列表", "Devices (within the caller's scope)", Login, ""),
    ("get", "/api/v1/devices/{id}", "devices", "设备详情", "A device", Login, ""),
    ("get", "/api/v1/devices/{id}/latest", "devices", "设备各指标最新值", "The newest value of each metric the device has sent", Login, ""),
    ("post", "/api/v1/devices", "devices", "登记设备（凭据仅显示一次）", "Register a device; answers 201 with its credentials (token, certificate, key, CA), shown only this once. 503 where the portal has no access to the device CA. With \"hj212\": {\"mn\", \"pw\"} an HJ 212 data logger (class hj212, no credentials, no CA needed): 201 with device_id and hj212_mn, 409 if the MN is registered", Login, "system administrator"),
    ("post", "/api/v1/devices/{id}/rotate", "devices", "轮换设备凭据", "Issue new credentials (shown once); the old token stops working at the next connection", Login, "system administrator"),
    ("get", "/api/v1/devices/{id}/commands", "devices", "设备命令记录（含数采仪 9011/9012 应答）", "A device's recent commands, newest first, with state and answers (for an HJ 212 logger its 9011/9012 replies), and its MN (hj212_mn, null for other devices)", Login, ""),
    ("post", "/api/v1/devices/{id}/commands", "devices", "向 HJ 212 数采仪下发命令（校时、上报间隔）", "Command an HJ 212 logger: {\"action\":\"sync_clock\"} (CN 1012) or {\"action\":\"set_interval\",\"seconds\":30..3600} (CN 1062); recorded and sent over its connection (202 with command_id); 409 for other devices", Login, "system administrator"),
    ("post", "/api/v1/devices/{id}/revoke", "devices", "吊销设备", "Revoke a device: refused from its next connection on, its data refused too", Login, "system administrator"),
    ("get", "/api/v1/devices/export", "devices", "导出设备（CSV/XLSX）", "Export devices with their metadata as CSV, or XLSX with ?format=xlsx (within the caller's scope)", Login, ""),
    ("post", "/api/v1/devices/import", "devices", "导入设备信息（CSV/XLSX）", "Update existing devices' object, class and metadata from CSV or XLSX, with a per-row error report (?dry_run=true)", Login, "system administrator"),
    ("get", "/api/v1/devices/{id}/metadata", "devices", "设备台账信息", "A device's metadata (location, installed at, model, metrics)", Login, ""),
    ("put", "/api/v1/devices/{id}/metadata", "devices", "修改设备台账信息", "Set a device's metadata", Login, "system administrator"),
    ("get", "/api/v1/metrics", "devices", "指标目录", "The metric catalog", Login, ""),
    ("get", "/api/v1/metrics/departments", "metrics", "部门履职统计（对监管的监管）", "Re-supervision figures per department over a period (?from&to), formulas below", Login, "system administrator, monitoring center, reviewer, re-supervision (all departments); leader (own department and sub-departments); handler (own department)"),
    ("get", "/api/v1/metrics/departments/export", "metrics", "导出部门履职统计（XLSX）", "The re-supervision figures as an XLSX workbook with Chinese headers: same parameters (?from&to) and rights as /api/v1/metrics/departments; empty cells where a rate or mean is null", Login, "as /api/v1/metrics/departments"),
    ("get", "/api/v1/series", "devices", "时序数据", "A device's metric over time (?device&metric&from&to&step)", Login, ""),
    ("get", "/api/v1/warnings", "warnings", "预警列表", "Warnings (filters: open, level, device, object, source, since, until, group)", Login, ""),
    ("get", "/api/v1/warnings/stream", "warnings", "实时预警推送（SSE）", "Live warning changes as server-sent events", Login, ""),
    ("get", "/api/v1/wall/summary", "warnings", "监控大屏汇总：各级别与各区域未处置预警数、设备在线率、摄像头在线数", "Wall figures: open warnings by level and region, devices online, cameras total and online", Login, ""),
    ("get", "/api/v1/warnings/{id}", "warnings", "预警详情（含证据）", "A warning with its evidence", Login, ""),
    ("get", "/api/v1/cameras", "devices", "摄像头列表：在线与画面健康、人员检测状态、区域、最新快照", "Cameras in the caller's scope with health, detection state, zones and the latest snapshot id", Login, ""),
    ("put", "/api/v1/cameras/{device}/{camera}/zones", "devices", "设置摄像头区域（下发 set_zones 命令）", "Replace a camera's zones: {zones:[{id,name,kind,polygon}]} in normalised coordinates; recorded and sent to the agent as a set_zones command (202)", Login, "monitoring center, system administrator"),
    ("get", "/api/v1/snapshots/{id}", "devices", "快照图片（JPEG，预警证据）", "A snapshot's JPEG (ETag = sha256, immutable); 404 outside the caller's scope", Login, ""),
    ("post", "/api/v1/warnings/{id}/resolve", "warnings", "人工处理预警", "Resolve a warning by hand, with a reason", Login, "monitoring center, system administrator"),
    ("get", "/api/v1/models", "rules", "检测模型及加载记录", "Detector models loaded by the analytics tier (name, version, file sha256, model card, loaded_at), newest first; `current` marks each detector's model in use", Login, ""),
    ("get", "/api/v1/rules", "rules", "预警规则列表", "Warning rules", Login, ""),
    ("post", "/api/v1/rules", "rules", "新增预警规则", "Create a rule", Login, "system administrator"),
    ("get", "/api/v1/rules/{id}", "rules", "预警规则详情", "A rule", Login, ""),
    ("put", "/api/v1/rules/{id}", "rules", "修改预警规则", "Update a rule (takes effect without restart)", Login, "system administrator"),
    ("delete", "/api/v1/rules/{id}", "rules", "删除预警规则", "Delete a rule", Login, "system administrator"),
    ("get", "/api/v1/silences", "warnings", "生效中的静默", "Active silences", Login, ""),
    ("post", "/api/v1/silences", "warnings", "新增静默", "Silence warnings for a bounded time, with a reason", Login, "monitoring center, system administrator"),
    ("delete", "/api/v1/silences/{id}", "warnings", "结束静默", "End a silence now", Login, "monitoring center, system administrator"),
    ("get", "/api/v1/maintenance", "warnings", "生效中的维护窗口", "Active maintenance windows", Login, ""),
    ("post", "/api/v1/maintenance", "warnings", "新增维护窗口", "Create a maintenance window (inhibits data warnings)", Login, "monitoring center, system administrator"),
    ("get", "/api/v1/warnings/precision", "triage", "预警准确率（按规则/模型）", "Precision per rule and per model: 1 - false positives / triaged", Login, "roles that see all business data"),
    ("post", "/api/v1/warnings/{id}/acknowledge", "triage", "确认预警", "Acknowledge a warning (stops its unacknowledged escalation)", Login, "monitoring center, system administrator"),
    ("post", "/api/v1/warnings/{id}/dispatch", "triage", "预警派发为任务", "Dispatch a warning as a task (to the responsible department unless one is named; joint task with co_department_ids)", Login, "monitoring center, system administrator"),
    ("post", "/api/v1/warnings/{id}/merge", "triage", "预警并入已有任务", "Merge a warning into an open task (task_id) or an open enforcement case (case_id)", Login, "monitoring center, system administrator"),
    ("post", "/api/v1/warnings/{id}/false-positive", "triage", "预警判定为误报", "Close a warning as a false positive (counts in its rule's or model's precision)", Login, "monitoring center, system administrator"),
    ("post", "/api/v1/complaints/{id}/task", "triage", "投诉转为任务", "Turn a complaint into a task; its public status follows the task", Login, "monitoring center, system administrator"),
    ("post", "/api/v1/complaints/{id}/callback", "triage", "登记投诉回访结果", "Record the complainant's callback answer (satisfied, basically_satisfied, dissatisfied)", Login, "monitoring center, system administrator"),
    ("get", "/api/v1/tasks", "tasks", "任务列表（待办箱）", "Tasks in the caller's scope, newest first: {items, total}; filters state, department_id, source, level, overdue, object_id, limit, offset", Login, "monitoring center: its regions; departments: tasks they lead or co-handle"),
    ("post", "/api/v1/tasks", "tasks", "人工派发任务", "Dispatch a task by hand (source manual or province)", Login, "monitoring center, system administrator"),
    ("get", "/api/v1/tasks/{id}", "tasks", "任务详情（含办理过程）", "A task with its departments, timeline, attachments, extensions and checkpoints", Login, ""),
    ("post", "/api/v1/tasks/{id}/sign", "tasks", "签收", "Sign for a task (dispatched -> signed); the handling clock starts", Login, "the lead department"),
    ("post", "/api/v1/tasks/{id}/start", "tasks", "开始办理", "Start work (signed -> in_progress)", Login, "the lead department"),
    ("post", "/api/v1/tasks/{id}/return", "tasks", "退回", "Return a task as not ours (dispatched -> returned), with a reason", Login, "the lead department"),
    ("post", "/api/v1/tasks/{id}/redispatch", "tasks", "重新派发", "Send a returned task to another department (returned -> dispatched)", Login, "monitoring center, system administrator"),
    ("post", "/api/v1/tasks/{id}/transfer", "tasks", "转办", "Transfer to another department (dispatched/signed -> dispatched), keeping the history", Login, "monitoring center; the lead department's leader"),
    ("post", "/api/v1/tasks/{id}/extension", "tasks", "申请延期", "Ask for a later handling deadline (in_progress)", Login, "the lead department"),
    ("post", "/api/v1/tasks/{id}/extension/approve", "tasks", "批准延期", "Approve the pending extension: the deadline moves", Login, "monitoring center, system administrator"),
    ("post", "/api/v1/tasks/{id}/extension/refuse", "tasks", "驳回延期", "Refuse the pending extension", Login, "monitoring center, system administrator"),
    ("post", "/api/v1/tasks/{id}/feedback", "tasks", "办理反馈", "Report what was done (in_progress -> feedback)", Login, "the lead department"),
    ("post", "/api/v1/tasks/{id}/co-feedback", "tasks", "协办反馈", "A co-handler's report on a joint task (state unchanged)", Login, "a co-handling department"),
    ("post", "/api/v1/tasks/{id}/approve", "tasks", "审核通过（办结）", "Approve the feedback (feedback -> closed)", Login, "the reviewer: the item's reviewer department, else the monitoring center or a reviewer"),
    ("post", "/api/v1/tasks/{id}/reject", "tasks", "审核驳回（重办）", "Reject the feedback (feedback -> in_progress, a redo), with a reason", Login, "the reviewer"),
    ("post", "/api/v1/tasks/{id}/archive", "tasks", "归档", "Archive a closed task", Login, "monitoring center, system administrator"),
    ("post", "/api/v1/tasks/{id}/comments", "tasks", "添加办理意见", "Comment on a task's timeline", Login, "anyone who sees the task, except re-supervision"),
    ("post", "/api/v1/tasks/{id}/attachments", "tasks", "上传附件", "Attach a JPEG, PNG, PDF, DOCX or XLSX file (multipart field file, at most 20 MiB; type checked by content, stored by content hash)", Login, "anyone who sees the task, except re-supervision"),
    ("get", "/api/v1/tasks/{id}/attachments/{attachment_id}", "tasks", "下载附件", "Download an attachment", Login, ""),
    ("get", "/api/v1/task-policies", "workflow", "任务时限配置", "Time limits and dispatch policy per item and level (item * = the level's default); limits like 30m, 24h, 3wd", Login, ""),
    ("put", "/api/v1/task-policies", "workflow", "设置任务时限", "Create or replace a policy (sign_limit, handle_limit, auto_dispatch, reviewer_department_id)", Login, "system administrator"),
    ("delete", "/api/v1/task-policies/{item}/{level}", "workflow", "删除事项时限", "Remove an item's own policy (the default applies again)", Login, "system administrator"),
    ("get", "/api/v1/calendar", "workflow", "工作日历（节假日与调休）", "Holidays and make-up working days of a year (?year=)", Login, ""),
    ("put", "/api/v1/calendar/{day}", "workflow", "设置节假日或调休日", "Mark a day (YYYY-MM-DD) as a holiday or a make-up working day", Login, "system administrator"),
    ("delete", "/api/v1/calendar/{day}", "workflow", "取消日期设置", "Make a day ordinary again", Login, "system administrator"),
    ("get", "/api/v1/responsibilities", "workflow", "事项-区划-责任部门", "Which department handles an item in a region", Login, ""),
    ("put", "/api/v1/responsibilities", "workflow", "设置责任部门", "Set the department handling an item in a region (and the regions under it)", Login, "system administrator"),
    ("delete", "/api/v1/responsibilities/{item}/{region_code}", "workflow", "删除责任部门设置", "Remove the department set for an item in a region (the parent region's, else the object's own department, applies again)", Login, "system administrator"),
    ("get", "/api/v1/complaints/services", "complaints", "投诉举报类别", "Complaint services (Open311 service codes)", Public, ""),
    ("get", "/api/v1/complaints/captcha", "complaints", "获取图片验证码", "An image CAPTCHA for the public form (rate-limited per address); `required: false` (no image) when the operator turned it off", Public, ""),
    ("post", "/api/v1/complaints", "complaints", "提交投诉举报", "File a complaint: multipart/form-data with the CAPTCHA answer and up to 3 JPEG/PNG/PDF attachments; returns a tracking number", Public, "rate-limited per address"),
    ("get", "/api/v1/complaints/track/{tracking_no}", "complaints", "按受理编号查询进度", "Status and public notes of a complaint, by tracking number (nothing private)", Public, "rate-limited per address"),
    ("get", "/api/v1/complaints", "complaints", "投诉举报列表", "Complaints (contact details masked; within the caller's scope)", Login, ""),
    ("get", "/api/v1/complaints/{id}", "complaints", "投诉举报详情", "A complaint, contact details masked, with its Open311 view", Login, ""),
    ("get", "/api/v1/complaints/{id}/attachments/{attachment_id}", "complaints", "下载附件", "Download an attachment", Login, ""),
    ("get", "/api/v1/complaints/{id}/contact", "complaints", "查看联系方式（留痕）", "The complainant's contact details, unmasked (audited)", Login, "monitoring center"),
    ("post", "/api/v1/complaints/{id}/close", "complaints", "办结投诉举报", "Close a complaint with a reason and an optional public note", Login, "monitoring center"),
    ("post", "/api/v1/tasks/{id}/case", "cases", "由任务立案", "Open an enforcement case from a task the department has signed for (one case per task; 409 otherwise)", Login, "handlers and leaders of the task's department, system administrator"),
    ("get", "/api/v1/cases", "cases", "案件列表", "Cases (filters: stage, department_id, object_id, limit, offset; within the caller's scope)", Login, ""),
    ("get", "/api/v1/cases/{id}", "cases", "案件详情（含各阶段与文书）", "A case with its stages (time, handler, note) and documents", Login, ""),
    ("post", "/api/v1/cases/{id}/advance", "cases", "案件进入下一阶段", "Move a case to the next stage: filed -> investigating -> decided -> executing -> closed; `decided` carries the legal basis (default: the catalog item's), penalty, amount_yuan (fines only, > 0) and disclose, and writes the object's credit record; any other order is a 409 with the reason", Login, "handlers and leaders of the case's department, system administrator"),
    ("post", "/api/v1/cases/{id}/documents", "cases", "上传案件文书", "Upload a document to a case stage: multipart/form-data with one `file` (PDF, JPEG, PNG, DOCX or XLSX, checked by content, at most 20 MiB) and an optional `stage` (default: the current one)", Login, "handlers and leaders of the case's department, system administrator"),
    ("get", "/api/v1/cases/{id}/documents/{doc_id}", "cases", "下载案件文书", "Download a case document", Login, ""),
    ("get", "/api/v1/objects/{id}/credit", "cases", "监管对象信用记录与风险分类", "An object's credit records, points and risk class: 100 less the points of the records in force (warning 5; confiscation or fine under 10,000 yuan 10; fine under 100,000 yuan 20; larger fines, suspension, revocation 40; each for 3 years); A >= 90, B >= 75, C >= 60, else D", Login, ""),
    ("get", "/api/public/v1/disclosures", "cases", "行政处罚信息公示", "Decisions marked for public disclosure: case number, object name, credit code, item, legal basis, penalty, amount, decision date (no personal data; ?limit&offset, at most 100)", Public, ""),
    ("get", "/api/public/v1/catalog", "catalog", "监管事项目录（公众查询）", "The regulatory item catalog in force for the public: published items only, without drafts or who edited them (?q searches code, department, items, method and object type; ?limit&offset, at most 100)", Public, "rate-limited per address"),
    ("get", "/api/v1/notifications", "notifications", "我的通知", "One's own notifications, newest first (?unread=true&limit&offset): {items, total, unread}", Login, ""),
    ("get", "/api/v1/notifications/unread-count", "notifications", "未读通知数", "How many of one's notifications are unread", Login, ""),
    ("post", "/api/v1/notifications/{id}/read", "notifications", "标记通知已读", "Mark one of one's notifications read (someone else's: 404)", Login, ""),
    ("post", "/api/v1/notifications/read-all", "notifications", "全部标记已读", "Mark all of one's notifications read", Login, ""),
    ("get", "/api/v1/departments/{id}/channels", "notifications", "部门通知通道", "A department's outbound channels (secrets never shown, robot keys masked)", Login, "system administrator"),
    ("post", "/api/v1/departments/{id}/channels", "notifications", "新增通知通道", "Add a channel: webhook (HMAC-signed), wecom, dingtalk (optional signing secret) or email", Login, "system administrator"),
    ("put", "/api/v1/channels/{id}", "notifications", "修改通知通道", "Change a channel (fields left out stay; \"secret\": null removes the secret)", Login, "system administrator"),
    ("delete", "/api/v1/channels/{id}", "notifications", "删除通知通道", "Delete a channel and its delivery history", Login, "system administrator"),
    ("post", "/api/v1/channels/{id}/test", "notifications", "发送测试消息", "Queue a test message to a channel (see its deliveries)", Login, "system administrator"),
    ("get", "/api/v1/channels/{id}/deliveries", "notifications", "通道投递记录", "A channel's deliveries with every attempt (?limit&offset)", Login, "system administrator"),
];

/// An example request body, so the browsable UI shows what to send.
fn example(method: &str, path: &str) -> Option<Value> {
    Some(match (method, path) {
        ("post", "/api/v1/auth/login") => json!({"username": "monitor", "password": "••••••••"}),
        ("post", "/api/v1/auth/password") => json!({"current": "••••••••", "new": "••••••••"}),
        ("post", "/api/v1/auth/tokens") => json!({"name": "数据对接"}),
        ("post", "/api/v1/users") => json!({"username": "handler3", "display_name": "承办人", "password": "••••••••", "roles": ["handler"], "department_id": 1}),
        ("put", "/api/v1/users/{id}/roles") => json!({"roles": ["reviewer"]}),
        ("post", "/api/v1/users/{id}/password") => json!({"password": "••••••••"}),
        ("put", "/api/v1/users/{id}/disabled") => json!({"disabled": true}),
        ("put", "/api/v1/cameras/{device}/{camera}/zones") => json!({"zones": [
            {"id": "window-1", "name": "1号窗口", "kind": "window", "polygon": [[0.05, 0.1], [0.45, 0.1], [0.45, 0.7], [0.05, 0.7]]},
            {"id": "queue-1", "name": "排队区", "kind": "queue", "polygon": [[0.5, 0.5], [0.95, 0.5], [0.95, 0.95], [0.5, 0.95]]}
        ]}),
        ("post", "/api/v1/regions") => json!({"code": "330108", "name": "滨江区", "parent_code": "330100", "level": "county"}),
        ("post", "/api/v1/departments") => json!({"code": "market", "name": "市场监管局", "parent_id": null}),
        ("put", "/api/v1/departments/{id}") => json!({"code": "market", "name": "市场监督管理局", "parent_id": null}),
        ("put", "/api/v1/departments/{id}/regions") => json!({"region_codes": ["330102"]}),
        ("post", "/api/v1/objects") | ("put", "/api/v1/objects/{id}") => json!({
            "id": "site-42", "name": "某某建设工程项目", "credit_code": "91350100M000100Y43", "type": "construction-site",
            "address": "杭州市上城区", "lon": 120.17, "lat": 30.25, "region_code": "330102", "department_id": 1
        }),
        ("put", "/api/v1/catalog/{code}/draft") => json!({
            "department": "住建局", "main_item": "建筑施工扬尘监管", "sub_item": "扬尘在线监测", "method": "非现场监管",
            "measures": "在线监测、视频巡查", "object_type": "建筑工地", "legal_basis": "《大气污染防治法》",
            "process": "预警-派单-处置-反馈", "result": "责令整改", "level": "市级"
        }),
        ("post", "/api/v1/rules") | ("put", "/api/v1/rules/{id}") => json!({
            "name": "PM10 超标", "scope": {"class": "dust-monitor", "metric": "pm10"}, "level": 2,
            "condition": {"kind": "threshold", "above": 150, "for_s": 600, "hysteresis": 10}, "item": "demo-dust"
        }),
        ("post", "/api/v1/silences") => json!({"device": "d123", "event": "rule:1", "duration_s": 3600, "reason": "设备校准"}),
        ("post", "/api/v1/maintenance") => json!({"object": "site-42", "duration_s": 7200, "reason": "停工检修"}),
        ("post", "/api/v1/warnings/{id}/resolve") => json!({"reason": "误报：传感器被遮挡"}),
        ("post", "/api/v1/complaints/{id}/close") => json!({"reason": "已核实并整改", "public_note": "已处理完毕"}),
        ("post", "/api/v1/tasks/{id}/case") => json!({"note": "现场核查发现未落实扬尘防治措施，拟立案调查"}),
        ("post", "/api/v1/cases/{id}/advance") => json!({
            "stage": "decided", "note": "处罚决定书已送达", "penalty": "fine", "amount_yuan": 50000, "disclose": true
        }),
        ("post", "/api/v1/devices") => json!({"name": "工地扬尘监测仪 3号", "object_id": "site-42", "class": "dust-monitor"}),
        ("post", "/api/v1/devices/{id}/rotate") | ("post", "/api/v1/devices/{id}/revoke") => json!({}),
        ("post", "/api/v1/devices/{id}/commands") => json!({"action": "set_interval", "seconds": 60}),
        ("put", "/api/v1/devices/{id}/metadata") => json!({"location": "东门", "lon": 120.15, "lat": 30.25, "installed_at": "2026-03-01T00:00:00Z", "model": "DM-200", "metric_list": ["pm10", "pm25"]}),
        ("post", "/api/v1/warnings/{id}/acknowledge") | ("post", "/api/v1/tasks/{id}/sign") | ("post", "/api/v1/tasks/{id}/start")
        | ("post", "/api/v1/tasks/{id}/archive") => json!({}),
        ("post", "/api/v1/warnings/{id}/dispatch") | ("post", "/api/v1/complaints/{id}/task") => {
            json!({"department_id": 1, "co_department_ids": [2], "level": 2, "title": "示范工地扬尘超标核查"})
        }
        ("post", "/api/v1/warnings/{id}/merge") => json!({"task_id": 42}),
        ("post", "/api/v1/warnings/{id}/false-positive") => json!({"note": "传感器被遮挡"}),
        ("post", "/api/v1/complaints/{id}/callback") => json!({"result": "satisfied"}),
        ("post", "/api/v1/tasks") => json!({
            "title": "工地扬尘核查", "description": "群众反映夜间扬尘", "level": 3, "department_id": 1,
            "co_department_ids": [], "object_id": "site-42", "item": "demo-dust", "source": "manual"
        }),
        ("post", "/api/v1/tasks/{id}/return") => json!({"reason": "不属于本部门职责"}),
        ("post", "/api/v1/tasks/{id}/redispatch") => json!({"department_id": 2, "co_department_ids": [], "reason": "改派生态环境局"}),
        ("post", "/api/v1/tasks/{id}/transfer") => json!({"department_id": 2, "reason": "属生态环境局职责"}),
        ("post", "/api/v1/tasks/{id}/extension") => json!({"until": "2026-12-31T18:00:00+08:00", "reason": "需第三方检测"}),
        ("post", "/api/v1/tasks/{id}/extension/approve") | ("post", "/api/v1/tasks/{id}/extension/refuse")
        | ("post", "/api/v1/tasks/{id}/approve") => json!({"note": "同意"}),
        ("post", "/api/v1/tasks/{id}/feedback") | ("post", "/api/v1/tasks/{id}/co-feedback") => {
            json!({"text": "已到场核查，责令覆盖裸土并洒水降尘"})
        }
        ("post", "/api/v1/tasks/{id}/reject") => json!({"reason": "缺少整改后现场照片"}),
        ("post", "/api/v1/tasks/{id}/comments") => json!({"text": "收到，今天下午到场"}),
        ("put", "/api/v1/task-policies") => {
            json!({"item": "demo-dust", "level": 1, "sign_limit": "15m", "handle_limit": "12h", "auto_dispatch": true, "reviewer_department_id": null})
        }
        ("put", "/api/v1/calendar/{day}") => json!({"kind": "holiday", "name": "国庆节"}),
        ("put", "/api/v1/responsibilities") => json!({"item": "demo-dust", "region_code": "330102", "department_id": 1}),
        ("post", "/api/v1/departments/{id}/channels") => json!({"kind": "dingtalk", "name": "生态环境局值班群", "url": "https://oapi.dingtalk.com/robot/send?access_token=…", "secret": "SEC…", "events": ["new_task", "reminder", "supervision", "escalation", "red_warning"]}),
        ("put", "/api/v1/channels/{id}") => json!({"enabled": false}),
        ("post", "/api/v1/notifications/{id}/read") | ("post", "/api/v1/notifications/read-all") | ("post", "/api/v1/channels/{id}/test") => json!({}),
        _ => return None,
    })
}

/// More than a summary line fits: definitions and formulas, appended to the description.
fn long_description(method: &str, path: &str) -> Option<&'static str> {
    Some(match (method, path) {
        ("get", "/api/v1/metrics/departments") => crate::routes::dept_metrics::DESCRIPTION,
        _ => return None,
    })
}

/// The OpenAPI document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path, tag, zh, en, access, roles) in ENDPOINTS {
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut desc = en.to_string();
        if !roles.is_empty() {
            desc.push_str(&format!(". Allowed: {roles}."));
        }
        if let Some(more) = long_description(method, path) {
            desc.push_str("\n\n");
            desc.push_str(more);
        }
        let mut responses = json!({
            "200": {"description": "OK"},
            "400": {"description": "Invalid input: the error names the field, in English and Chinese", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        });
        if *access == Login {
            responses["401"] = json!({"description": "Not logged in", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
            responses["403"] = json!({"description": "The role does not allow it (or a missing CSRF token on a cookie session)"});
            responses["404"] = json!({"description": "Not found, or outside the caller's scope (indistinguishable)"});
        }
        let mut op = json!({
            "tags": [tag],
            "summary": format!("{zh} / {en}"),
            "description": desc,
            "operationId": format!("{method}_{}", path.trim_start_matches('/').replace(['/', '{', '}'], "_")),
            "parameters": params,
            "responses": responses,
        });
        if *access == Public {
            op["security"] = json!([]);
        }
        if path.ends_with("/attachments") && *method == "post" {
            op["requestBody"] = json!({"required": true, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}}
            }}}});
        }
        if *path == "/api/v1/complaints" && *method == "post" {
            op["requestBody"] = json!({"required": true, "content": {"multipart/form-data": {"schema": {
                "type": "object",
                "required": ["service_code", "description", "captcha_id", "captcha_answer"],
                "properties": {
                    "service_code": {"type": "string"}, "description": {"type": "string"}, "address": {"type": "string"},
                    "lon": {"type": "number"}, "lat": {"type": "number"}, "contact_name": {"type": "string"},
                    "phone": {"type": "string"}, "id_number": {"type": "string"},
                    "captcha_id": {"type": "string"}, "captcha_answer": {"type": "string"},
                    "attachment": {"type": "array", "items": {"type": "string", "format": "binary"}}
                }
            }}}});
        } else if *method == "post" && path.ends_with("/documents") {
            op["requestBody"] = json!({"required": true, "content": {"multipart/form-data": {"schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}, "stage": {"type": "string"}}
            }}}});
        } else if path.ends_with("/import") {
            op["requestBody"] = json!({"required": true, "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {"schema": {"type": "string", "format": "binary"}}
            }});
        } else if matches!(*method, "post" | "put") && !path.ends_with("/logout") && !path.ends_with("/publish") {
            let mut media = json!({"schema": {"type": "object"}});
            if let Some(ex) = example(method, path) {
                media["example"] = ex;
            }
            op["requestBody"] = json!({"required": true, "content": {"application/json": media}});
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "offsite 非现场监管平台 API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "JSON over HTTP. Log in with POST /api/v1/auth/login; send the token as `Authorization: Bearer <token>`, or use the session cookie and send `X-CSRF-Token` on changes. Times are RFC 3339 UTC.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"cookie": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": crate::auth::SESSION_COOKIE},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "object", "properties": {
                        "code": {"type": "string"}, "message": {"type": "string"}, "message_zh": {"type": "string"}
                    }}}
                }
            }
        },
        "paths": paths,
    })
}

/// Swagger UI on `/api/docs` and the document on `/api/openapi.json` (assets bundled at build
/// time).
pub fn swagger_ui() -> utoipa_swagger_ui::SwaggerUi {
    let doc: utoipa::openapi::OpenApi = serde_json::from_value(document()).expect("the generated document is valid OpenAPI");
    utoipa_swagger_ui::SwaggerUi::new("/api/docs").url("/api/openapi.json", doc)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every `(method, path)` the router in lib.rs registers.
    fn routed() -> BTreeSet<(String, String)> {
        let src = include_str!("lib.rs");
        let mut out = BTreeSet::new();
        for chunk in src.split(".route(").skip(1) {
            let chunk = chunk.split(".fallback(").next().unwrap_or(chunk);
            let path = chunk.split('"').nth(1).expect("a path literal").to_owned();
            for m in ["get", "post", "put", "delete"] {
                let needle = format!("{m}(routes::");
                let dotted = format!(".{m}(routes::");
                let qualified = format!("routing::{m}(routes::");
                if chunk.trim_start().starts_with(&format!("\"{path}\", {m}(routes::"))
                    || chunk.contains(&format!(", {needle}"))
                    || chunk.contains(&dotted)
                    || chunk.contains(&qualified)
                    || chunk.contains(&format!("\n            {needle}"))
                {
                    out.insert((m.to_owned(), path.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn every_routed_operation_is_described_and_nothing_else() {
        let described: BTreeSet<(String, String)> = ENDPOINTS
            .iter()
            .filter(|e| !e.1.starts_with("/api/docs") && e.1 != "/api/openapi.json")
            .map(|e| (e.0.to_owned(), e.1.to_owned()))
            .collect();
        let routed: BTreeSet<(String, String)> =
            routed().into_iter().filter(|(_, p)| !p.starts_with("/api/docs") && p != "/api/openapi.json").collect();
        let missing: Vec<_> = routed.difference(&described).collect();
        let extra: Vec<_> = described.difference(&routed).collect();
        assert!(missing.is_empty(), "routed but not in the OpenAPI table: {missing:?}");
        assert!(extra.is_empty(), "in the OpenAPI table but not routed: {extra:?}");
    }

    #[test]
    fn every_json_body_operation_has_an_example() {
        for (method, path, ..) in ENDPOINTS {
            let json_body = matches!(*method, "post" | "put")
                && !path.ends_with("/logout")
                && !path.ends_with("/import")
                && !path.ends_with("/publish")
                && !path.ends_with("/attachments")
                && !path.ends_with("/documents")
                && *path != "/api/v1/complaints";
            if json_body {
                assert!(example(method, path).is_some(), "{method} {path} has no example body");
            }
        }
    }

    #[test]
    fn the_department_figures_carry_their_formulas() {
        let doc = document();
        let desc = doc["paths"]["/api/v1/metrics/departments"]["get"]["description"].as_str().unwrap();
        for f in ["signed_on_time / signed", "closed_on_time / closed", "returns / received", "redone / reviewed"] {
            assert!(desc.contains(f), "{f} missing from {desc}");
        }
    }

    #[test]
    fn the_document_is_valid_openapi_for_the_ui() {
        let doc: utoipa::openapi::OpenApi = serde_json::from_value(document()).unwrap();
        assert!(doc.paths.paths.contains_key("/api/v1/warnings/{id}"));
    }
}
