//! Helpers of the analytics-tier tests: a PM10 threshold rule, devices streaming PM10 through
//! the real edge agent's link, and queries of shard owners and rule warnings.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result};
use offsite_edge_agent::{DeviceLink, Endpoint, LinkOptions};
use offsite_store::{Condition, Level, NewRule, Scope};
use offsite_wire::{DeviceCredentials, MetricKey, Sample};

use crate::{stored_rows, wait_for, Site};

pub fn sample(ts_ms: i64, value: f64) -> Sample {
    Sample {
        ts: chrono::DateTime::from_timestamp_millis(ts_ms).unwrap(),
        metric: MetricKey::parse("pm10").unwrap(),
        value,
    }
}

/// PM10 above 150 raises (level 2), below 140 clears.
pub async fn pm10_rule(site: &Site) -> Result<()> {
    site.db
        .store
        .insert_rule(&NewRule {
            name: "PM10 超标".into(),
            scope: Scope {
                metric: Some("pm10".into()),
                ..Default::default()
            },
            level: Level::ORANGE,
            condition: Condition::Threshold {
                above: Some(150.0),
                below: None,
                for_s: 0,
                hysteresis: 10.0,
            },
            item: None,
            enabled: true,
        })
        .await?;
    Ok(())
}

/// The rule warnings of a device: (count, open), oldest first.
pub async fn rule_warnings(site: &Site, device: &str) -> Result<Vec<(i32, bool)>> {
    Ok(sqlx::query_as(
        "SELECT w.count, w.resolved_at IS NULL FROM warnings w JOIN devices d ON d.key = w.device_key \
         WHERE d.id = $1 AND w.source = 'rules' ORDER BY w.id",
    )
    .bind(device)
    .fetch_all(site.db.store.pool())
    .await?)
}

pub async fn wait_online(site: &Site, ids: &[&str]) -> Result<()> {
    let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    let query = || async {
        sqlx::query_as::<_, (String, Option<bool>)>(
            "SELECT d.id, s.online FROM devices d LEFT JOIN device_status s ON s.device_key = d.key WHERE d.id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(site.db.store.pool())
        .await
    };
    // A wait for liveness, not a timing check: on a loaded machine a tier started just before
    // can take longer than 20 s to connect and record a status.
    let r = wait_for("devices online", Duration::from_secs(60), || async {
        query()
            .await
            .map(|v| v.len() == ids.len() && v.iter().all(|(_, o)| *o == Some(true)))
            .unwrap_or(false)
    })
    .await;
    r.with_context(|| format!("device status: {:?}", describe_status(query())))
}

pub fn describe_status<
    F: std::future::Future<Output = Result<Vec<(String, Option<bool>)>, sqlx::Error>>,
>(
    f: F,
) -> String {
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| format!("{:?}", rt.block_on(f)))
}

pub async fn device_key(site: &Site, device: &str) -> Result<i32> {
    Ok(sqlx::query_scalar("SELECT key FROM devices WHERE id = $1")
        .bind(device)
        .fetch_one(site.db.store.pool())
        .await?)
}

/// Owner of each shard (live leases only).
pub async fn owners(site: &Site) -> Result<Vec<Option<String>>> {
    Ok(site
        .db
        .store
        .analytics_shards()
        .await?
        .into_iter()
        .map(|(_, o, _)| o)
        .collect())
}

/// A device streaming PM10 once per call of `send`, device time advancing one second each.
pub struct Streamer {
    pub link: DeviceLink,
    pub creds: DeviceCredentials,
    pub id: String,
    pub next_ts: i64,
    pub sent: usize,
}

impl Streamer {
    pub fn connect(site: &Site, d: &DeviceCredentials, start_ms: i64) -> Result<Self> {
        Self::connect_to(site.tls_port, d, start_ms)
    }

    /// Connects to the devices' MQTT/TLS listener on `port` (the site's broker or an external one).
    pub fn connect_to(port: u16, d: &DeviceCredentials, start_ms: i64) -> Result<Self> {
        let opts = LinkOptions {
            resend_after: Duration::from_secs(2),
            ..LinkOptions::default()
        };
        let link = DeviceLink::connect(
            d,
            &Endpoint {
                host: "localhost".into(),
                port,
            },
            opts,
            None,
        )?;
        Ok(Self {
            link,
            creds: d.clone(),
            id: d.device_id.to_string(),
            next_ts: start_ms,
            sent: 0,
        })
    }

    pub async fn send(&mut self, values: &[f64]) -> Result<()> {
        let samples = values
            .iter()
            .map(|v| {
                self.next_ts += 1000;
                sample(self.next_ts, *v)
            })
            .collect::<Vec<_>>();
        self.sent += samples.len();
        self.link.publish(samples).await?;
        Ok(())
    }

    pub async fn stored_equals_sent(&self, site: &Site) -> Result<()> {
        assert!(
            self.link.flush(Duration::from_secs(60)).await,
            "{}: not all batches acknowledged",
            self.id
        );
        let rows = stored_rows(site, &self.id).await?;
        assert_eq!(
            rows.len(),
            self.sent,
            "{}: stored count equals sent count",
            self.id
        );
        let distinct: BTreeSet<i64> = rows.iter().map(|r| r.1).collect();
        assert_eq!(distinct.len(), rows.len(), "{}: no duplicates", self.id);
        Ok(())
    }
}

pub async fn wait_rule_warnings(
    site: &Site,
    device: &str,
    want: &[(i32, bool)],
    timeout: Duration,
) -> Result<()> {
    wait_for(
        &format!("rule warnings {want:?} of {device}"),
        timeout,
        || async {
            rule_warnings(site, device)
                .await
                .map(|w| w == want)
                .unwrap_or(false)
        },
    )
    .await
    .with_context(|| {
        format!(
            "{device} has {:?}",
            describe_warnings(rule_warnings(site, device))
        )
    })
}

/// For error messages: the current value of a query, or its error.
pub fn describe_warnings<F: std::future::Future<Output = Result<Vec<(i32, bool)>>>>(
    f: F,
) -> String {
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| format!("{:?}", rt.block_on(f)))
}
