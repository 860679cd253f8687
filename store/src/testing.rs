//! Test support: one embedded cluster shared by every test process, a fresh database per test.
//!
//! The cluster lives in `$OFFSITE_TEST_PG_DIR` (default `/tmp/offsite-test-pg`) and is left running
//! between test binaries; `make test` stops it at the end. With `OFFSITE_TEST_DATABASE_URL` set,
//! that server is used instead.

use std::path::PathBuf;

use anyhow::Result;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor};
use tokio::sync::OnceCell;

use crate::embedded::{EmbeddedOptions, EmbeddedPostgres};
use crate::Store;

static CLUSTER: OnceCell<PgConnectOptions> = OnceCell::const_new();

pub fn test_cluster_dir() -> PathBuf {
    std::env::var_os("OFFSITE_TEST_PG_DIR").map(PathBuf::from).unwrap_or_else(|| "/tmp/offsite-test-pg".into())
}

async fn server() -> Result<PgConnectOptions> {
    let opts = CLUSTER
        .get_or_try_init(|| async {
            if let Ok(url) = std::env::var("OFFSITE_TEST_DATABASE_URL") {
                return Ok::<_, anyhow::Error>(url.parse::<PgConnectOptions>()?);
            }
            let pg = EmbeddedPostgres::ensure(&test_cluster_dir(), &EmbeddedOptions::default()).await?;
            let opts = pg.connect_options("postgres");
            drop_abandoned(&opts).await;
            Ok(opts)
        })
        .await?;
    Ok(opts.clone())
}

/// Drops the databases of test processes that have ended (`t_<pid>_<n>` whose pid is gone), so the
/// shared cluster does not grow run after run. Best effort: a failure only leaves them there.
async fn drop_abandoned(admin: &PgConnectOptions) {
    let Ok(mut conn) = sqlx::PgConnection::connect_with(admin).await else { return };
    let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 't\\_%'")
        .fetch_all(&mut conn)
        .await
        .unwrap_or_default();
    for name in names {
        let pid = name.split('_').nth(1).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if pid.is_some() && !alive {
            let _ = conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await;
        }
    }
    let _ = conn.close().await;
}

/// A fresh, migrated database for one test.
pub struct TestDb {
    pub store: Store,
    pub name: String,
    pub options: PgConnectOptions,
}

impl TestDb {
    pub async fn new() -> Result<Self> {
        let admin = server().await?;
        let name = format!("t_{}_{}", std::process::id(), rand::random::<u32>());
        let mut conn = sqlx::PgConnection::connect_with(&admin).await?;
        conn.execute(format!("CREATE DATABASE {name}").as_str()).await?;
        conn.close().await?;
        let options = admin.database(&name);
        let store = Store::connect(options.clone(), 8).await?;
        Ok(Self { store, name, options })
    }

    /// A libpq URL for child processes (`offsite ingest --database-url ...`).
    pub fn url(&self) -> String {
        let host = self.options.get_socket().map(|p| p.display().to_string()).unwrap_or_else(|| self.options.get_host().to_owned());
        format!(
            "postgres://{}@localhost:{}/{}?host={}",
            self.options.get_username(),
            self.options.get_port(),
            self.name,
            host
        )
    }
}
