//! Storage: the one migration stream, the pool, the embedded PostgreSQL launcher and the typed
//! queries every tier calls. No other crate writes SQL against these tables.

pub mod analytics_shards;
pub mod audit;
pub mod auth;
pub mod bench_data;
pub mod calendar;
pub mod cameras;
pub mod captcha;
pub mod cases;
pub mod commands;
pub mod complaints;
pub mod credit;
pub mod dept_metrics;
pub mod detector_models;
pub mod devices;
pub mod embedded;
pub mod files;
pub mod hj212;
pub mod https;
pub mod moto;
pub mod notifications;
pub mod registers;
pub mod rules;
pub mod s3;
pub mod samples;
pub mod tasks;
pub mod testing;
pub mod wall;
pub mod warnings;

use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tracing::info;

pub use audit::{AuditEvent, AuditFilter, AuditLog, AuditRecord, Break, BreakKind, VerifyReport};
pub use commands::CommandRecord;
pub use complaints::{
    AttachmentMeta, ComplaintFilter, ComplaintRecord, ComplaintStatus, NewAttachment, NewComplaint, RateLimit, StatusNote,
};
pub use devices::{DeviceAuth, DeviceRecord, NewDevice};
pub use registers::{
    AccessScope, CatalogFields, CatalogItem, CatalogStatus, CreditCode, CreditCodeError, Department, DeviceMetadata,
    FieldError, ImportOptions, ImportReport, NewDepartment, NewObject, ObjectFilter, ObjectRecord, OrphanObject, Region,
    RegionLevel, RegionNode, RowError, SeedReport,
};
pub use rules::{Condition, Level, NewRule, Rule, Scope, RULES_CHANNEL};
pub use samples::{LatestValue, MetricDef, Partitioning, SampleRow, SeriesPoint, WriteOutcome};
pub use warnings::{
    MaintenanceRecord, NewMaintenance, NewSilence, NewWarning, SilenceRecord, Upserted, WarningChange, WarningFilter,
    WarningRecord, WARNINGS_CHANNEL,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Handle to the database: cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
    partitions: samples::PartitionCache,
    warning_counts: warnings::CountCache,
}

impl Store {
    /// Connects with a URL (`postgres://...`) or options, and runs pending migrations.
    pub async fn connect(opts: PgConnectOptions, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts)
            .await
            .context("connecting to PostgreSQL")?;
        let store = Self { pool, partitions: Default::default(), warning_counts: Default::default() };
        store.migrate().await?;
        Ok(store)
    }

    pub async fn connect_url(url: &str, max_connections: u32) -> Result<Self> {
        let opts: PgConnectOptions = url.parse().context("parsing database URL")?;
        Self::connect(opts, max_connections).await
    }

    pub async fn migrate(&self) -> Result<()> {
        // Several processes may start at once against one database; serialise migrations.
        MIGRATOR.run(&self.pool).await.context("running migrations")?;
        let mode = self.partitioning().await?;
        info!(?mode, "storage ready");
        Ok(())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Dead-letters a refused message with its reason and raw payload.
    pub async fn insert_dead_letters(&self, rows: &[DeadLetter]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut b = sqlx::QueryBuilder::new("INSERT INTO dead_letters (device_id, topic, reason, detail, payload) ");
        b.push_values(rows, |mut r, d| {
            r.push_bind(&d.device_id).push_bind(&d.topic).push_bind(d.reason).push_bind(&d.detail).push_bind(&d.payload);
        });
        b.build().execute(&self.pool).await?;
        Ok(())
    }

    /// Counts dead letters by reason (for tests and the operator).
    pub async fn dead_letter_counts(&self) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as("SELECT reason, count(*) FROM dead_letters GROUP BY reason ORDER BY reason")
            .fetch_all(&self.pool)
            .await?)
    }
}

#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub device_id: Option<String>,
    pub topic: String,
    pub reason: &'static str,
    pub detail: String,
    pub payload: Vec<u8>,
}
