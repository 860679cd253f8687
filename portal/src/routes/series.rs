//! `GET /api/v1/series`: one device's metric over a time range, raw or in `date_bin` buckets.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, TimeDelta, Utc};
use offsite_store::SeriesPoint;
use offsite_wire::MetricKey;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::extract::{int_param, ApiQuery};
use crate::routes::devices::parse_device_id;
use crate::AppState;

pub const DEFAULT_LIMIT: i64 = 10_000;
pub const MAX_LIMIT: i64 = 100_000;
/// Bounds the work one bucketed query may ask of the database.
pub const MAX_BUCKETS: i64 = 100_000;
/// Larger strides gain nothing for a dashboard, and PostgreSQL intervals overflow eventually.
pub const MAX_STEP_SECS: i64 = 366 * 86_400;
pub const DEFAULT_RANGE: TimeDelta = TimeDelta::hours(24);

/// Every field is a string so that each problem gets its own bilingual message, and an empty
/// value (`&step=`) reads as "not given".
#[derive(Debug, Deserialize)]
pub struct SeriesParams {
    pub device: Option<String>,
    pub metric: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub step: Option<String>,
    pub limit: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SeriesResponse {
    pub device: String,
    pub metric: String,
    pub step_secs: Option<i64>,
    #[serde(serialize_with = "crate::time::serialize")]
    pub from: DateTime<Utc>,
    #[serde(serialize_with = "crate::time::serialize")]
    pub to: DateTime<Utc>,
    pub items: Vec<PointView>,
    pub total: usize,
}

/// A raw point has `quality`; a bucket has `min`, `max` and `count` and its `value` is the mean.
#[derive(Debug, Serialize)]
pub struct PointView {
    #[serde(serialize_with = "crate::time::serialize")]
    pub ts: DateTime<Utc>,
    pub value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<i16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
}

impl From<SeriesPoint> for PointView {
    fn from(p: SeriesPoint) -> Self {
        Self { ts: p.ts, value: p.value, quality: p.quality, min: p.min, max: p.max, count: p.count }
    }
}

/// A validated request.
#[derive(Debug, PartialEq)]
struct Query {
    device: offsite_wire::DeviceId,
    metric: MetricKey,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    step_secs: Option<i64>,
    limit: i64,
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn validate(p: &SeriesParams, now: DateTime<Utc>) -> ApiResult<Query> {
    let device = non_empty(&p.device).ok_or_else(|| {
        ApiError::bad_request("query parameter `device` is required", "缺少必填参数 device（设备编号）")
    })?;
    let device = parse_device_id(device)?;
    let metric = non_empty(&p.metric)
        .ok_or_else(|| ApiError::bad_request("query parameter `metric` is required", "缺少必填参数 metric（指标）"))?;
    let metric = MetricKey::parse(metric).map_err(|e| {
        ApiError::bad_request(
            format!("invalid metric key: {e}"),
            "指标名无效：只能包含 1 到 64 个英文字母、数字、'_'、'.' 或 '-'",
        )
    })?;

    let time = |name: &str, v: &Option<String>| -> ApiResult<Option<DateTime<Utc>>> {
        match non_empty(v) {
            None => Ok(None),
            Some(s) => crate::time::parse(s).map(Some).ok_or_else(|| {
                ApiError::bad_request(
                    format!("{name} must be an RFC 3339 time such as 2024-05-01T08:00:00+08:00"),
                    format!("参数 {name} 必须是 RFC 3339 时间，例如 2024-05-01T08:00:00+08:00"),
                )
            }),
        }
    };
    let to = time("to", &p.to)?.unwrap_or(now);
    let from = match time("from", &p.from)? {
        Some(f) => f,
        None => to
            .checked_sub_signed(DEFAULT_RANGE)
            .ok_or_else(|| ApiError::bad_request("to is out of range", "参数 to 超出范围"))?,
    };
    if from >= to {
        return Err(ApiError::bad_request("from must be earlier than to", "开始时间 from 必须早于结束时间 to"));
    }

    let step_secs = match non_empty(&p.step) {
        None => None,
        Some(s) => Some(parse_step(s).ok_or_else(|| {
            ApiError::bad_request(
                format!("step must be a duration such as 30s, 5m, 1h, 1d or a number of seconds, between 1s and {MAX_STEP_SECS}s"),
                format!("参数 step 必须是时长，例如 30s、5m、1h、1d 或秒数，范围 1 秒到 {MAX_STEP_SECS} 秒"),
            )
        })?),
    };
    if let Some(step) = step_secs {
        // Milliseconds: the range of any RFC 3339 pair fits an i64 with room to spare.
        let range_ms = (to - from).num_milliseconds();
        let step_ms = step * 1000;
        let buckets = (range_ms + step_ms - 1) / step_ms;
        if buckets > MAX_BUCKETS {
            return Err(ApiError::bad_request(
                format!("range / step gives {buckets} buckets; at most {MAX_BUCKETS} are allowed, use a larger step"),
                format!("时间范围除以 step 得到 {buckets} 个时间桶，最多允许 {MAX_BUCKETS} 个，请增大 step"),
            ));
        }
    }

    let limit = int_param("limit", p.limit.as_deref())?.unwrap_or(DEFAULT_LIMIT);
    if !(0..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            format!("limit must be between 0 and {MAX_LIMIT}"),
            format!("limit 必须在 0 到 {MAX_LIMIT} 之间"),
        ));
    }
    Ok(Query { device, metric, from, to, step_secs, limit })
}

/// `30s`, `5m`, `1h`, `1d` or bare seconds; `None` if malformed or outside `1..=MAX_STEP_SECS`.
fn parse_step(s: &str) -> Option<i64> {
    let (digits, unit) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    // Digits only: no sign, no fraction, no whitespace inside.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = digits.parse().ok()?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return None,
    };
    n.checked_mul(mult).filter(|secs| (1..=MAX_STEP_SECS).contains(secs))
}

pub async fn series(
    State(state): State<AppState>,
    who: crate::auth::Principal,
    ApiQuery(p): ApiQuery<SeriesParams>,
) -> ApiResult<Json<SeriesResponse>> {
    let q = validate(&p, Utc::now())?;
    let device = super::devices::visible_device(&state, &who, &q.device).await?;
    let metric = state.store.metric_by_key(q.metric.as_str()).await?.ok_or_else(|| {
        ApiError::not_found(format!("metric {} not found", q.metric), format!("指标 {} 不存在", q.metric))
    })?;
    let points = state.store.series(device.key, metric.id, q.from, q.to, q.step_secs, q.limit).await?;
    let items: Vec<PointView> = points.into_iter().map(PointView::from).collect();
    Ok(Json(SeriesResponse {
        device: device.id,
        metric: metric.key,
        step_secs: q.step_secs,
        from: q.from,
        to: q.to,
        total: items.len(),
        items,
    }))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn params(pairs: &[(&str, &str)]) -> SeriesParams {
        let get = |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        SeriesParams {
            device: get("device"),
            metric: get("metric"),
            from: get("from"),
            to: get("to"),
            step: get("step"),
            limit: get("limit"),
        }
    }

    #[test]
    fn steps() {
        assert_eq!(parse_step("30s"), Some(30));
        assert_eq!(parse_step("5m"), Some(300));
        assert_eq!(parse_step("1h"), Some(3600));
        assert_eq!(parse_step("1d"), Some(86_400));
        assert_eq!(parse_step("90"), Some(90));
        for bad in ["", "0", "0s", "-5", "-5s", "1.5m", "5x", "m", "s", "+5", "1 m", "99999999999999999999", "367d"] {
            assert_eq!(parse_step(bad), None, "{bad:?}");
        }
        assert_eq!(parse_step("366d"), Some(MAX_STEP_SECS));
    }

    #[test]
    fn defaults_and_bounds() {
        let now = Utc.with_ymd_and_hms(2024, 5, 2, 0, 0, 0).unwrap();
        let q = validate(&params(&[("device", "d1"), ("metric", "pm10")]), now).unwrap();
        assert_eq!((q.from, q.to, q.step_secs, q.limit), (now - DEFAULT_RANGE, now, None, DEFAULT_LIMIT));

        // Exactly MAX_BUCKETS is allowed, one more is not.
        let to = "2024-05-01T00:00:00Z";
        let from_ok =
            (Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap() - TimeDelta::seconds(MAX_BUCKETS)).to_rfc3339();
        let from_bad =
            (Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap() - TimeDelta::seconds(MAX_BUCKETS + 1)).to_rfc3339();
        let base = [("device", "d1"), ("metric", "pm10"), ("to", to), ("step", "1s")];
        assert!(validate(&params(&[base.as_slice(), &[("from", from_ok.as_str())]].concat()), now).is_ok());
        let e = validate(&params(&[base.as_slice(), &[("from", from_bad.as_str())]].concat()), now).unwrap_err();
        assert_eq!(e.code, "bad_request");

        for bad in [
            vec![("metric", "pm10")],
            vec![("device", "d1")],
            vec![("device", "d-1"), ("metric", "pm10")],
            vec![("device", "d1"), ("metric", "a/b")],
            vec![("device", "d1"), ("metric", "pm10"), ("from", "notatime")],
            vec![("device", "d1"), ("metric", "pm10"), ("from", to), ("to", to)],
            vec![("device", "d1"), ("metric", "pm10"), ("limit", "100001")],
            vec![("device", "d1"), ("metric", "pm10"), ("limit", "-1")],
            vec![("device", "d1"), ("metric", "pm10"), ("step", "0s")],
        ] {
            let e = validate(&params(&bad), now).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{bad:?}");
            assert!(!e.message_zh.is_empty());
        }
    }
}
