//! Payloads: a batch of samples up, acknowledgements and status.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, TimeZone, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::MetricKey;

/// Hard upper bound on samples in one message, whatever the configuration says.
pub const MAX_SAMPLES_PER_BATCH: usize = 10_000;

/// A point in time as sent by a device: RFC 3339 text or integer milliseconds since the Unix epoch.
pub type Timestamp = DateTime<Utc>;

/// One measured value of one metric at one device time.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub ts: Timestamp,
    pub metric: MetricKey,
    pub value: f64,
}

/// One message on `/tenants/<id>/v1/data`: many samples of one device, with the device's sequence
/// number so the platform can acknowledge it.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub seq: u64,
    pub samples: Vec<Sample>,
}

/// Why a message was refused. The label is used in metrics and in the dead-letter table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    BadTopic,
    TooLarge,
    Malformed,
    Empty,
    TooManySamples,
    NonFinite,
    BadTimestamp,
    BadMetric,
    UnknownDevice,
    Revoked,
}

impl RejectReason {
    pub const ALL: [RejectReason; 10] = [
        Self::BadTopic,
        Self::TooLarge,
        Self::Malformed,
        Self::Empty,
        Self::TooManySamples,
        Self::NonFinite,
        Self::BadTimestamp,
        Self::BadMetric,
        Self::UnknownDevice,
        Self::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadTopic => "bad_topic",
            Self::TooLarge => "too_large",
            Self::Malformed => "malformed",
            Self::Empty => "empty",
            Self::TooManySamples => "too_many_samples",
            Self::NonFinite => "non_finite",
            Self::BadTimestamp => "bad_timestamp",
            Self::BadMetric => "bad_metric",
            Self::UnknownDevice => "unknown_device",
            Self::Revoked => "revoked",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused message: the reason and a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self { reason, detail: detail.into() }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

/// Limits a batch must respect besides its shape.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_samples: usize,
    /// Oldest device time accepted.
    pub not_before: Timestamp,
    /// Newest device time accepted (now plus allowed clock skew).
    pub not_after: Timestamp,
}

/// Parses and validates one data message. Never panics, whatever the bytes.
pub fn decode_batch(payload: &[u8], limits: &Limits) -> Result<Batch, Rejection> {
    if payload.len() > limits.max_bytes {
        return Err(Rejection::new(
            RejectReason::TooLarge,
            format!("{} bytes, limit {}", payload.len(), limits.max_bytes),
        ));
    }
    let raw: RawBatch<'_> = serde_json::from_slice(payload).map_err(|e| {
        let msg = e.to_string();
        // serde_json refuses numbers that overflow f64 (1e400): that is a non-finite value.
        let reason = if msg.contains("number out of range") {
            RejectReason::NonFinite
        } else {
            RejectReason::Malformed
        };
        Rejection::new(reason, msg)
    })?;
    if raw.samples.is_empty() {
        return Err(Rejection::new(RejectReason::Empty, "no samples"));
    }
    let max = limits.max_samples.min(MAX_SAMPLES_PER_BATCH);
    if raw.samples.len() > max {
        return Err(Rejection::new(
            RejectReason::TooManySamples,
            format!("{} samples, limit {max}", raw.samples.len()),
        ));
    }
    let mut samples = Vec::with_capacity(raw.samples.len());
    for (i, s) in raw.samples.into_iter().enumerate() {
        let value = match s.value {
            RawValue::Finite(v) => v,
            RawValue::NonFinite(t) => {
                return Err(Rejection::new(RejectReason::NonFinite, format!("sample {i}: value {t}")))
            }
        };
        let ts = s.ts.0.map_err(|e| Rejection::new(RejectReason::BadTimestamp, format!("sample {i}: {e}")))?;
        if ts < limits.not_before || ts > limits.not_after {
            return Err(Rejection::new(
                RejectReason::BadTimestamp,
                format!("sample {i}: {ts} outside {} .. {}", limits.not_before, limits.not_after),
            ));
        }
        let metric = MetricKey::parse(&s.metric)
            .map_err(|e| Rejection::new(RejectReason::BadMetric, format!("sample {i}: {e}")))?;
        samples.push(Sample { ts, metric, value });
    }
    Ok(Batch { seq: raw.seq, samples })
}

/// Encodes a batch the way the edge agent sends it (timestamps as epoch milliseconds).
pub fn encode_batch(batch: &Batch) -> Vec<u8> {
    #[derive(Serialize)]
    struct S<'a> {
        ts: i64,
        metric: &'a str,
        value: f64,
    }
    #[derive(Serialize)]
    struct B<'a> {
        seq: u64,
        samples: Vec<S<'a>>,
    }
    let b = B {
        seq: batch.seq,
        samples: batch
            .samples
            .iter()
            .map(|s| S { ts: s.ts.timestamp_millis(), metric: s.metric.as_str(), value: s.value })
            .collect(),
    };
    serde_json::to_vec(&b).expect("plain structs serialise")
}

#[derive(Deserialize)]
struct RawBatch<'a> {
    seq: u64,
    #[serde(borrow)]
    samples: Vec<RawSample<'a>>,
}

#[derive(Deserialize)]
struct RawSample<'a> {
    ts: RawTs,
    #[serde(borrow)]
    metric: Cow<'a, str>,
    value: RawValue,
}

/// A timestamp that failed to parse is kept as an error so the rejection can say which sample.
struct RawTs(Result<Timestamp, String>);

impl<'de> Deserialize<'de> for RawTs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawTs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("RFC 3339 text or integer epoch milliseconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawTs, E> {
                Ok(RawTs(Utc.timestamp_millis_opt(v).single().ok_or_else(|| format!("{v} ms out of range"))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawTs, E> {
                match i64::try_from(v) {
                    Ok(v) => self.visit_i64(v),
                    Err(_) => Ok(RawTs(Err(format!("{v} ms out of range")))),
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawTs, E> {
                Ok(RawTs(Err(format!("{v}: milliseconds must be an integer"))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawTs, E> {
                Ok(RawTs(
                    DateTime::parse_from_rfc3339(v)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|e| format!("{v:?}: {e}")),
                ))
            }
        }
        d.deserialize_any(V)
    }
}

/// JSON has no NaN or infinity; devices that try send them as strings. Both are told apart here
/// so they are counted as `non_finite` rather than `malformed`.
enum RawValue {
    Finite(f64),
    NonFinite(String),
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a finite number")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawValue, E> {
                Ok(if v.is_finite() { RawValue::Finite(v) } else { RawValue::NonFinite(v.to_string()) })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawValue, E> {
                Ok(RawValue::Finite(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValue, E> {
                Ok(RawValue::Finite(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawValue, E> {
                let lower = v.trim().to_ascii_lowercase();
                let lower = lower.trim_start_matches(['+', '-']);
                if matches!(lower, "nan" | "inf" | "infinity") {
                    Ok(RawValue::NonFinite(v.to_owned()))
                } else {
                    Err(E::invalid_type(de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Platform -> device on `/tenants/<id>/v1/ack`: sequence numbers of batches that are committed
/// (`seqs`) or refused for good and dead-lettered (`rejected`). Either way the device may drop them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    #[serde(default)]
    pub seqs: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<RejectedSeq>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedSeq {
    pub seq: u64,
    pub reason: RejectReason,
}

impl Ack {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain struct serialises")
    }
    pub fn decode(b: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(b)
    }
    /// Every sequence number this ack releases, committed or refused.
    pub fn released(&self) -> impl Iterator<Item = u64> + '_ {
        self.seqs.iter().copied().chain(self.rejected.iter().map(|r| r.seq))
    }
}

/// Device -> platform on `/tenants/<id>/v1/status` (retained); the last will carries `online: false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub online: bool,
}

impl Status {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain struct serialises")
    }
    pub fn decode(b: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_bytes: 1 << 20,
            max_samples: 1000,
            not_before: Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap(),
            not_after: Utc.with_ymd_and_hms(2100, 1, 1, 0, 0, 0).unwrap(),
        }
    }

    fn reason(p: &str) -> RejectReason {
        decode_batch(p.as_bytes(), &limits()).unwrap_err().reason
    }

    #[test]
    fn decodes_both_timestamp_forms() {
        let b = decode_batch(
            br#"{"seq":7,"samples":[{"ts":"2026-11-27T08:00:00+08:00","metric":"pm10","value":35.5},
                                   {"ts":1795737600000,"metric":"pm25","value":12}]}"#,
            &limits(),
        )
        .unwrap();
        assert_eq!(b.seq, 7);
        assert_eq!(b.samples.len(), 2);
        assert_eq!(b.samples[0].ts, b.samples[1].ts);
        assert_eq!(b.samples[1].value, 12.0);
    }

    #[test]
    fn round_trips_through_encoder() {
        let b = Batch {
            seq: 3,
            samples: vec![Sample {
                ts: Utc.timestamp_millis_opt(1_764_201_600_123).unwrap(),
                metric: MetricKey::parse("t").unwrap(),
                value: -1.5,
            }],
        };
        assert_eq!(decode_batch(&encode_batch(&b), &limits()).unwrap(), b);
    }

    #[test]
    fn rejects_with_reasons() {
        assert_eq!(reason("not json"), RejectReason::Malformed);
        assert_eq!(reason(r#"{"seq":1}"#), RejectReason::Malformed);
        assert_eq!(reason(r#"{"seq":1,"samples":[]}"#), RejectReason::Empty);
        assert_eq!(reason(r#"{"seq":1,"samples":[{"ts":0,"metric":"a","value":"NaN"}]}"#), RejectReason::NonFinite);
        assert_eq!(reason(r#"{"seq":1,"samples":[{"ts":0,"metric":"a","value":1e400}]}"#), RejectReason::NonFinite);
        assert_eq!(reason(r#"{"seq":1,"samples":[{"ts":0,"metric":"a","value":1}]}"#), RejectReason::BadTimestamp);
        assert_eq!(
            reason(r#"{"seq":1,"samples":[{"ts":"yesterday","metric":"a","value":1}]}"#),
            RejectReason::BadTimestamp
        );
        assert_eq!(
            reason(r#"{"seq":1,"samples":[{"ts":1764201600000,"metric":"a b","value":1}]}"#),
            RejectReason::BadMetric
        );
        assert_eq!(
            reason(r#"{"seq":1,"samples":[{"ts":1764201600000,"metric":"a","value":"12"}]}"#),
            RejectReason::Malformed
        );
        let mut l = limits();
        l.max_bytes = 10;
        assert_eq!(decode_batch(b"{\"seq\":1,\"samples\":[]}", &l).unwrap_err().reason, RejectReason::TooLarge);
        let many: Vec<String> =
            (0..1001).map(|i| format!(r#"{{"ts":{},"metric":"a","value":1}}"#, 1764201600000u64 + i)).collect();
        assert_eq!(reason(&format!(r#"{{"seq":1,"samples":[{}]}}"#, many.join(","))), RejectReason::TooManySamples);
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 7u64;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    b"{}[]\",:0123456789.eE-+ seqsamplestsmetricvalueNaN"[(seed >> 33) as usize % 48]
                })
                .collect();
            let _ = decode_batch(&bytes, &limits());
        }
    }

    #[test]
    fn ack_round_trip() {
        let a = Ack { seqs: vec![1, 2], rejected: vec![RejectedSeq { seq: 3, reason: RejectReason::NonFinite }] };
        assert_eq!(Ack::decode(&a.encode()).unwrap(), a);
        assert_eq!(a.released().collect::<Vec<_>>(), vec![1, 2, 3]);
    }
}

#[cfg(test)]
mod float_tests {
    use super::*;

    /// Values must arrive bit for bit: recorded data is compared with what the platform stores.
    #[test]
    fn values_round_trip_exactly() {
        let limits = Limits {
            max_bytes: 1 << 20,
            max_samples: 10,
            not_before: Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap(),
            not_after: Utc.with_ymd_and_hms(2100, 1, 1, 0, 0, 0).unwrap(),
        };
        for text in ["19.761251902999998", "21.698403961700002", "0.1", "1e-300", "123456789.12345679"] {
            let v: f64 = text.parse().unwrap();
            let b = decode_batch(format!(r#"{{"seq":1,"samples":[{{"ts":1396310400000,"metric":"x","value":{text}}}]}}"#).as_bytes(), &limits).unwrap();
            assert_eq!(b.samples[0].value.to_bits(), v.to_bits(), "{text}");
            let again = decode_batch(&encode_batch(&b), &limits).unwrap();
            assert_eq!(again.samples[0].value.to_bits(), v.to_bits(), "{text} after encode");
        }
    }
}
