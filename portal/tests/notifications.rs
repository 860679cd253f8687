//! The notification center and channel administration over HTTP: one's own list, unread count and
//! marking read (someone else's notification is 404); channels are the system administrator's
//! (403 for everyone else), validated, audited, and never echo their secret.

use std::time::Duration;

mod common;

use anyhow::Result;
use chrono::Utc;
use offsite_portal::{serve, AppState};
use offsite_store::auth::Role;
use offsite_store::testing::TestDb;
use offsite_store::AuditFilter;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::oneshot;

struct App {
    base: String,
    db: TestDb,
    housing: i64,
    ecology: i64,
    _stop: oneshot::Sender<()>,
}

async fn app() -> Result<App> {
    let db = TestDb::new().await?;
    db.store.seed_demo_registers().await?;
    let housing = db.store.department_by_code("housing-construction").await?.unwrap().id;
    let ecology = db.store.department_by_code("ecology").await?.unwrap().id;
    for (name, roles, dept) in [
        ("admin", &[Role::SystemAdmin][..], None),
        ("sec", &[Role::SecurityAdmin][..], None),
        ("auditor", &[Role::AuditAdmin][..], None),
        ("mon", &[Role::Monitor][..], None),
        ("h_housing", &[Role::Handler][..], Some(housing)),
        ("l_housing", &[Role::Leader][..], Some(housing)),
        ("h_ecology", &[Role::Handler][..], Some(ecology)),
        ("rev", &[Role::Reviewer][..], None),
        ("resup", &[Role::Resupervision][..], None),
    ] {
        common::add_user(&db.store, name, roles, dept).await?;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = oneshot::channel::<()>();
    let audit = offsite_store::AuditLog::start(db.store.clone(), None, Duration::from_secs(60));
    let state = AppState::new(db.store.clone()).with_live(offsite_portal::live::channel()).with_audit(audit);
    tokio::spawn(serve(listener, state, async move {
        let _ = rx.await;
    }));
    Ok(App { base, db, housing, ecology, _stop: tx })
}

impl App {
    async fn call(&self, user: &str, method: Method, path: &str, body: Option<Value>) -> Result<(StatusCode, Value)> {
        let c = common::client(&self.db.store, user).await?;
        let mut r = c.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    async fn audited(&self, action: &str, entity_id: &str) -> Result<Value> {
        for _ in 0..100 {
            let f =
                AuditFilter { action: Some(action.into()), entity_id: Some(entity_id.into()), ..Default::default() };
            let (items, _) = self.db.store.audit_search(&f).await?;
            if let Some(first) = items.first() {
                return Ok(serde_json::to_value(first)?);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("{action} {entity_id} not audited")
    }

    /// A task of `department` with a `dispatched` and a `remind` event, fanned out.
    async fn task_with_events(&self, department: i64) -> Result<i64> {
        let s = &self.db.store;
        let now = Utc::now();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO tasks (task_no, title, source, level, department_id, state, sign_limit, handle_limit,
                                dispatched_at, dispatched_by, sign_due)
             VALUES ('RW' || $1, '夜间施工噪声', 'complaint', 3, $2, 'dispatched', '2h', '5wd', $3, 'mon', $4) RETURNING id",
        )
        .bind(format!("{:014}", rand_suffix()))
        .bind(department)
        .bind(now)
        .bind(now + chrono::Duration::hours(2))
        .fetch_one(s.pool())
        .await?;
        sqlx::query("INSERT INTO task_departments (task_id, department_id, role) VALUES ($1, $2, 'lead')")
            .bind(id)
            .bind(department)
            .execute(s.pool())
            .await?;
        for action in ["dispatched", "remind"] {
            sqlx::query(
                "INSERT INTO task_events (task_id, at, actor, action, department_id) VALUES ($1, now(), 'mon', $2, $3)",
            )
            .bind(id)
            .bind(action)
            .bind(department)
            .execute(s.pool())
            .await?;
        }
        s.fan_out_notifications(100).await?;
        Ok(id)
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    20260501000000 + N.fetch_add(1, Ordering::SeqCst)
}

#[tokio::test]
async fn own_notifications_list_count_and_read() -> Result<()> {
    let app = app().await?;
    let task = app.task_with_events(app.housing).await?;
    app.task_with_events(app.ecology).await?;

    let (st, v) = app.call("h_housing", Method::GET, "/api/v1/notifications", None).await?;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!((v["total"].as_i64(), v["unread"].as_i64()), (Some(2), Some(2)), "{v}");
    let items = v["items"].as_array().unwrap();
    assert_eq!(items[0]["kind"], "reminder", "newest first: {v}");
    assert_eq!(items[1]["kind"], "new_task");
    assert_eq!(items[1]["kind_name_zh"], "新任务");
    assert_eq!(items[1]["task_id"], task);
    assert_eq!(items[1]["link"], format!("/tasks/{task}"));
    assert_eq!(items[1]["read"], false);
    assert!(items[1]["title_zh"].as_str().unwrap().contains("夜间施工噪声"));
    assert!(items[1]["created_at"].as_str().unwrap().ends_with('Z'));
    // The leader of housing hears of the new task, not of the reminder.
    let (_, v) = app.call("l_housing", Method::GET, "/api/v1/notifications", None).await?;
    let kinds: Vec<&str> = v["items"].as_array().unwrap().iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["new_task"]);
    // Ecology's handler sees only ecology's task.
    let (_, v) = app.call("h_ecology", Method::GET, "/api/v1/notifications", None).await?;
    assert!(v["items"].as_array().unwrap().iter().all(|i| i["task_id"] != task), "{v}");
    let ecology_one = v["items"][0]["id"].as_i64().unwrap();

    let new_task = items[1]["id"].as_i64().unwrap();
    // Someone else's: 404, and it stays unread.
    let (st, v) =
        app.call("h_housing", Method::POST, &format!("/api/v1/notifications/{ecology_one}/read"), None).await?;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert!(v["error"]["message_zh"].as_str().unwrap().contains("不存在"));
    let (_, v) = app.call("h_ecology", Method::GET, "/api/v1/notifications/unread-count", None).await?;
    assert_eq!(v["unread"], 2);
    let (st, _) = app.call("h_housing", Method::POST, "/api/v1/notifications/999999999/read", None).await?;
    assert_eq!(st, StatusCode::NOT_FOUND);

    let (st, _) = app.call("h_housing", Method::POST, &format!("/api/v1/notifications/{new_task}/read"), None).await?;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, v) = app.call("h_housing", Method::GET, "/api/v1/notifications/unread-count", None).await?;
    assert_eq!(v["unread"], 1);
    let (_, v) = app.call("h_housing", Method::GET, "/api/v1/notifications?unread=true", None).await?;
    assert_eq!((v["total"].as_i64(), v["unread"].as_i64()), (Some(1), Some(1)), "{v}");
    assert_eq!(v["items"][0]["kind"], "reminder");
    let (_, v) = app.call("h_housing", Method::GET, "/api/v1/notifications?limit=1&offset=1", None).await?;
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert_eq!(v["items"][0]["read"], true);
    assert!(v["items"][0]["read_at"].is_string());
    let (st, v) = app.call("h_housing", Method::GET, "/api/v1/notifications?limit=0", None).await?;
    assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid")));

    let (st, v) = app.call("h_housing", Method::POST, "/api/v1/notifications/read-all", None).await?;
    assert_eq!((st, v["marked"].as_i64()), (StatusCode::OK, Some(1)));
    let (_, v) = app.call("h_housing", Method::GET, "/api/v1/notifications/unread-count", None).await?;
    assert_eq!(v["unread"], 0);
    let (_, v) = app.call("h_ecology", Method::GET, "/api/v1/notifications/unread-count", None).await?;
    assert_eq!(v["unread"], 2, "another user's read-all changed nothing of mine");

    // Any logged-in user has a (possibly empty) notification center; nobody else does.
    let (st, v) = app.call("auditor", Method::GET, "/api/v1/notifications", None).await?;
    assert_eq!((st, v["total"].as_i64()), (StatusCode::OK, Some(0)));
    let st = reqwest::get(format!("{}/api/v1/notifications", app.base)).await?.status();
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test]
async fn channels_are_the_administrators_and_keep_their_secrets() -> Result<()> {
    let app = app().await?;
    let dept = app.ecology;
    let list = format!("/api/v1/departments/{dept}/channels");
    let hook = json!({
        "kind": "dingtalk", "name": "生态环境局值班群",
        "url": "https://robot.example.cn/robot/send?access_token=very-secret-token",
        "secret": "SECtop-secret-value",
    });

    // Only the system administrator; everyone else 403, and nothing is created.
    for user in ["sec", "auditor", "mon", "h_ecology", "l_housing", "rev", "resup"] {
        let (st, _) = app.call(user, Method::POST, &list, Some(hook.clone())).await?;
        assert_eq!(st, StatusCode::FORBIDDEN, "{user} POST");
        let (st, _) = app.call(user, Method::GET, &list, None).await?;
        assert_eq!(st, StatusCode::FORBIDDEN, "{user} GET");
    }
    let (st, created) = app.call("admin", Method::POST, &list, Some(hook.clone())).await?;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let text = created.to_string();
    assert!(!text.contains("top-secret") && !text.contains("very-secret-token"), "secrets echoed: {text}");
    assert_eq!(created["secret_set"], true);
    assert_eq!(created["url"], "https://robot.example.cn/robot/send?access_token=***");
    assert_eq!(created["events"], json!(["new_task", "reminder", "supervision", "escalation", "red_warning"]));
    assert_eq!(created["enabled"], true);
    let id = created["id"].as_i64().unwrap();
    let audit = app.audited("channel.create", &id.to_string()).await?;
    assert!(!audit.to_string().contains("top-secret"), "the audit trail has no secret: {audit}");

    let (st, v) = app.call("admin", Method::GET, &list, None).await?;
    assert_eq!((st, v["total"].as_i64()), (StatusCode::OK, Some(1)));
    assert!(!v.to_string().contains("top-secret"));
    let (st, _) = app.call("admin", Method::GET, "/api/v1/departments/999999/channels", None).await?;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = app.call("admin", Method::POST, "/api/v1/departments/999999/channels", Some(hook.clone())).await?;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Validation names the field.
    for (body, field) in [
        (json!({"kind": "sms", "name": "x", "url": "https://a.cn/"}), "kind"),
        (json!({"kind": "webhook", "name": "x", "url": "ftp://a.cn/"}), "url"),
        (json!({"kind": "webhook", "name": "x", "url": "javascript:alert(1)"}), "url"),
        (json!({"kind": "webhook", "name": "x"}), "url"),
        (json!({"kind": "webhook", "name": " ", "url": "https://a.cn/"}), "name"),
        (json!({"kind": "email", "name": "x", "recipients": ["not-an-address"]}), "recipients"),
        (json!({"kind": "email", "name": "x", "recipients": []}), "recipients"),
        (json!({"kind": "wecom", "name": "x", "url": "https://a.cn/?key=k", "secret": "s"}), "secret"),
        (json!({"kind": "webhook", "name": "x", "url": "https://a.cn/", "events": ["bogus"]}), "events"),
    ] {
        let (st, v) = app.call("admin", Method::POST, &list, Some(body.clone())).await?;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["error"]["code"], "invalid", "{v}");
        assert!(v["error"]["message"].as_str().unwrap().starts_with(field), "{field}: {v}");
        assert!(!v["error"]["message_zh"].as_str().unwrap().is_empty());
    }
    let (st, _) = app
        .call(
            "admin",
            Method::POST,
            &list,
            Some(json!({"kind": "webhook", "name": "x", "url": "https://a.cn/", "colour": 1})),
        )
        .await?;
    assert_eq!(st, StatusCode::BAD_REQUEST, "unknown fields are refused");
    let (st, mail) = app
        .call(
            "admin",
            Method::POST,
            &list,
            Some(json!({"kind": "email", "name": "科室邮箱", "recipients": ["duty@eco.example.cn"], "events": ["closed"]})),
        )
        .await?;
    assert_eq!(st, StatusCode::CREATED, "{mail}");
    assert_eq!(mail["url"], Value::Null);
    assert_eq!(mail["secret_set"], false);

    // Changing: fields left out stay, the secret is kept unless replaced or removed.
    let path = format!("/api/v1/channels/{id}");
    for user in ["sec", "mon", "h_ecology", "resup"] {
        let (st, _) = app.call(user, Method::PUT, &path, Some(json!({"enabled": false}))).await?;
        assert_eq!(st, StatusCode::FORBIDDEN, "{user}");
    }
    let (st, v) = app
        .call("admin", Method::PUT, &path, Some(json!({"name": "值班群（夜间）", "events": ["red_warning"]})))
        .await?;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!((v["name"].as_str(), v["secret_set"].as_bool()), (Some("值班群（夜间）"), Some(true)));
    assert_eq!(v["events"], json!(["red_warning"]));
    assert_eq!(v["url"], "https://robot.example.cn/robot/send?access_token=***", "URL kept");
    let stored: Option<String> = sqlx::query_scalar("SELECT secret FROM notification_channels WHERE id = $1")
        .bind(id)
        .fetch_one(app.db.store.pool())
        .await?;
    assert_eq!(stored.as_deref(), Some("SECtop-secret-value"));
    let audit = app.audited("channel.update", &id.to_string()).await?;
    assert!(!audit.to_string().contains("top-secret"));
    let (_, v) = app.call("admin", Method::PUT, &path, Some(json!({"secret": null}))).await?;
    assert_eq!(v["secret_set"], false);
    let (st, v) = app.call("admin", Method::PUT, &path, Some(json!({"url": "file:///etc/passwd"}))).await?;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, _) = app.call("admin", Method::PUT, "/api/v1/channels/999999", Some(json!({"enabled": false}))).await?;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // A test message is queued and shows in the deliveries; not on a disabled channel.
    let (st, _) = app.call("mon", Method::POST, &format!("{path}/test"), None).await?;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) = app.call("admin", Method::POST, &format!("{path}/test"), None).await?;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let delivery = v["delivery_id"].as_i64().unwrap();
    app.audited("channel.test", &id.to_string()).await?;
    let (st, v) = app.call("admin", Method::GET, &format!("{path}/deliveries"), None).await?;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["total"], 1);
    assert_eq!(v["items"][0]["id"], delivery);
    assert_eq!(v["items"][0]["kind"], "channel_test");
    assert_eq!(v["items"][0]["state"], "pending");
    assert_eq!(v["items"][0]["attempt_log"], json!([]));
    let (st, _) = app.call("h_ecology", Method::GET, &format!("{path}/deliveries"), None).await?;
    assert_eq!(st, StatusCode::FORBIDDEN);
    app.call("admin", Method::PUT, &path, Some(json!({"enabled": false}))).await?;
    let (st, v) = app.call("admin", Method::POST, &format!("{path}/test"), None).await?;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");

    // Deleting.
    let (st, _) = app.call("l_housing", Method::DELETE, &path, None).await?;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = app.call("admin", Method::DELETE, &path, None).await?;
    assert_eq!(st, StatusCode::NO_CONTENT);
    app.audited("channel.delete", &id.to_string()).await?;
    let (st, _) = app.call("admin", Method::DELETE, &path, None).await?;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, v) = app.call("admin", Method::GET, &list, None).await?;
    assert_eq!(v["total"], 1, "the e-mail channel is left");
    Ok(())
}
