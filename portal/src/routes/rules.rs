//! Warning rules: `GET /api/v1/rules`, `POST /api/v1/rules`, `GET|PUT|DELETE /api/v1/rules/{id}`.
//!
//! The body is the store's [`NewRule`] JSON. Unknown fields are refused (400) rather than ignored:
//! a misspelt scope field (`"device_id"`) would otherwise widen a rule to every device, and a
//! misspelt condition field (`"for"`) silently fall back to its default.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use offsite_store::{Condition, Level, NewRule, Rule, Scope};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::auth::Principal;
use offsite_store::AuditEvent;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::routes::devices::Page;
use crate::AppState;

const FIELDS: [&str; 6] = ["name", "scope", "level", "condition", "item", "enabled"];
const SCOPE_FIELDS: [&str; 4] = ["device", "object", "class", "metric"];

/// The fields each condition kind takes, besides `kind`.
fn condition_fields(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "threshold" => &["above", "below", "for_s", "hysteresis"],
        "rate_of_change" => &["max_per_minute"],
        "flat_line" => &["for_s", "epsilon"],
        "data_gap" => &["max_gap_s"],
        // Unknown to us: serde says what the store accepts.
        _ => return None,
    })
}

fn invalid(en: String, zh: String) -> ApiError {
    ApiError::unprocessable(en, zh)
}

fn unknown_fields(obj: &Map<String, Value>, allowed: &[&str], what: &str, what_zh: &str) -> ApiResult<()> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(invalid(
            format!("unknown field `{k}` in {what}; expected one of {}", allowed.join(", ")),
            format!("{what_zh}中有未知字段 `{k}`，可用字段：{}", allowed.join("、")),
        )),
    }
}

fn field<T: DeserializeOwned>(obj: &Map<String, Value>, key: &str) -> Result<(), String> {
    match obj.get(key) {
        Some(v) => serde_json::from_value::<T>(v.clone()).map(|_| ()).map_err(|e| format!("{key}: {e}")),
        None => Ok(()),
    }
}

/// Parses and validates a rule body; every refusal is a 400 naming the problem.
pub fn parse_rule(body: Value) -> ApiResult<NewRule> {
    let Value::Object(obj) = &body else {
        return Err(invalid("the rule must be a JSON object".into(), "规则必须是 JSON 对象".into()));
    };
    unknown_fields(obj, &FIELDS, "the rule", "规则")?;
    if let Some(Value::Object(scope)) = obj.get("scope") {
        unknown_fields(scope, &SCOPE_FIELDS, "scope", "适用范围 scope ")?;
    }
    if let Some(Value::Object(cond)) = obj.get("condition") {
        if let Some(fields) = cond.get("kind").and_then(Value::as_str).and_then(condition_fields) {
            let mut allowed = vec!["kind"];
            allowed.extend_from_slice(fields);
            unknown_fields(cond, &allowed, "condition", "条件 condition ")?;
        }
    }
    let rule: NewRule = match serde_json::from_value(body.clone()) {
        Ok(r) => r,
        Err(whole) => {
            // serde_json's message has no path; find the field at fault to name it.
            let detail = field::<String>(obj, "name")
                .and_then(|_| field::<Scope>(obj, "scope"))
                .and_then(|_| field::<Level>(obj, "level"))
                .and_then(|_| field::<Condition>(obj, "condition"))
                .and_then(|_| field::<Option<String>>(obj, "item"))
                .and_then(|_| field::<bool>(obj, "enabled"))
                .err()
                .unwrap_or_else(|| whole.to_string());
            return Err(invalid(format!("invalid rule: {detail}"), format!("规则无效：{detail}")));
        }
    };
    for (name, v) in [
        ("scope.device", &rule.scope.device),
        ("scope.object", &rule.scope.object),
        ("scope.class", &rule.scope.class),
        ("scope.metric", &rule.scope.metric),
        ("item", &rule.item),
    ] {
        if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err(invalid(
                format!("{name} must not be empty; leave it out to match everything"),
                format!("{name} 不能为空字符串；不限制时请省略该字段"),
            ));
        }
    }
    rule.validate().map_err(|e| invalid(format!("invalid rule: {e}"), format!("规则无效：{}", zh_problem(&e))))?;
    Ok(rule)
}

/// The Chinese for the store's validation messages; unknown ones pass through.
fn zh_problem(en: &str) -> String {
    let zh = match en {
        "rule name must be 1..=200 characters" => "规则名称 name 必须是 1 到 200 个字符",
        "threshold rule needs `above` or `below`" => "阈值规则必须设置上限 above 或下限 below",
        "hysteresis must be >= 0" => "回差 hysteresis 必须大于等于 0",
        "max_per_minute must be > 0" => "每分钟最大变化量 max_per_minute 必须大于 0",
        "flat line needs for_s > 0 and epsilon >= 0" => "数据不变规则要求 for_s 大于 0 且 epsilon 大于等于 0",
        "max_gap_s must be > 0" => "最大数据间隔 max_gap_s 必须大于 0",
        other => return other.to_owned(),
    };
    zh.to_owned()
}

fn rule_not_found(id: i64) -> ApiError {
    ApiError::not_found(format!("rule {id} not found"), format!("规则 {id} 不存在"))
}

pub async fn list(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Page<Rule>>> {
    crate::access::scope(&state, &who).await?;
    let items = state.store.list_rules().await?;
    let total = items.len() as i64;
    Ok(Json(Page { items, total }))
}

pub async fn get(State(state): State<AppState>, who: Principal, ApiPath(id): ApiPath<i64>) -> ApiResult<Json<Rule>> {
    crate::access::scope(&state, &who).await?;
    state.store.rule(id).await?.map(Json).ok_or_else(|| rule_not_found(id))
}

pub async fn create(State(state): State<AppState>, who: Principal, ApiJson(body): ApiJson<Value>) -> ApiResult<Response> {
    who.require(&crate::access::CONFIGURE)?;
    let rule = parse_rule(body)?;
    check_item(&state, &rule).await?;
    let created = state.store.insert_rule(&rule).await?;
    tracing::info!(rule = created.id, name = %created.name, "rule created");
    state.audit(AuditEvent::new(who.username(), "rule.create", "rule").id(created.id.to_string()).after(json_of(&created))).await;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub async fn update(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Rule>> {
    who.require(&crate::access::CONFIGURE)?;
    let rule = parse_rule(body)?;
    check_item(&state, &rule).await?;
    let before = state.store.rule(id).await?;
    let updated = state.store.update_rule(id, &rule).await?.ok_or_else(|| rule_not_found(id))?;
    tracing::info!(rule = id, "rule updated");
    let mut ev = AuditEvent::new(who.username(), "rule.update", "rule").id(id.to_string()).after(json_of(&updated));
    if let Some(b) = before {
        ev = ev.before(json_of(&b));
    }
    state.audit(ev).await;
    Ok(Json(updated))
}

pub async fn delete(State(state): State<AppState>, who: Principal, ApiPath(id): ApiPath<i64>) -> ApiResult<StatusCode> {
    who.require(&crate::access::CONFIGURE)?;
    let before = state.store.rule(id).await?;
    if !state.store.delete_rule(id).await? {
        return Err(rule_not_found(id));
    }
    tracing::info!(rule = id, "rule deleted");
    let mut ev = AuditEvent::new(who.username(), "rule.delete", "rule").id(id.to_string());
    if let Some(b) = before {
        ev = ev.before(json_of(&b));
    }
    state.audit(ev).await;
    Ok(StatusCode::NO_CONTENT)
}

/// A rule's regulatory item must be a published item of the catalog.
async fn check_item(state: &AppState, rule: &NewRule) -> ApiResult<()> {
    if let Some(item) = &rule.item {
        if state.store.catalog_published(item).await?.is_none() {
            return Err(ApiError::unprocessable(
                format!("item: no published catalog item {item:?}"),
                format!("item：监管事项目录中没有已发布的事项 {item:?}"),
            ));
        }
    }
    Ok(())
}

fn json_of(r: &Rule) -> Value {
    serde_json::to_value(r).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rules_parse_and_refuse() {
        let r = parse_rule(json!({
            "name": "PM10 超标", "scope": {"metric": "pm10"}, "level": 2,
            "condition": {"kind": "threshold", "above": 150, "for_s": 600, "hysteresis": 10}
        }))
        .unwrap();
        assert_eq!((r.level, r.enabled, r.scope.metric.as_deref()), (Level::ORANGE, true, Some("pm10")));

        for (body, needle) in [
            (json!({"name": "x", "level": 5, "condition": {"kind": "data_gap", "max_gap_s": 60}}), "level"),
            (json!({"name": "x", "level": 1, "condition": {"kind": "threshold", "for_s": 60}}), "above"),
            (json!({"name": "x", "level": 1, "condition": {"kind": "magic"}}), "magic"),
            (json!({"name": "", "level": 1, "condition": {"kind": "data_gap", "max_gap_s": 60}}), "name"),
            (json!({"level": 1, "condition": {"kind": "data_gap", "max_gap_s": 60}}), "name"),
            (json!({"name": "x", "level": 1, "condition": {"kind": "data_gap", "max_gap_s": 60}, "lvl": 1}), "lvl"),
            (
                json!({"name": "x", "level": 1, "scope": {"device_id": "d1"},
                       "condition": {"kind": "data_gap", "max_gap_s": 60}}),
                "device_id",
            ),
            (json!({"name": "x", "level": 1, "condition": {"kind": "threshold", "above": 1, "for": 60}}), "for"),
            (
                json!({"name": "x", "level": 1, "scope": {"device": " "},
                       "condition": {"kind": "data_gap", "max_gap_s": 60}}),
                "scope.device",
            ),
            (json!([1, 2]), "object"),
        ] {
            let e = parse_rule(body.clone()).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
            assert!(e.message.contains(needle), "{body}: {}", e.message);
            assert!(!e.message_zh.is_empty());
        }
    }
}
