//! Where stored files live (`[files]`): task attachments, case documents and camera snapshots.
//!
//! `backend = "local"` keeps them in `<data_dir>/files` (one machine, or a shared volume);
//! `backend = "s3"` in an S3-compatible bucket, so replicas on different machines share them. The
//! secret is best given as `OFFSITE_FILES__SECRET_ACCESS_KEY` (a Kubernetes Secret) than in the file.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use offsite_store::files::{FileStore, LocalDirStore};
use offsite_store::s3::{S3Settings, S3Store};
use serde::{Deserialize, Serialize};

use crate::configuration::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilesBackend {
    Local,
    S3,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct FilesConfig {
    pub backend: FilesBackend,
    /// S3: `https://host[:port]` of the object store (AWS, MinIO, Ceph RGW, ...).
    pub endpoint: Option<String>,
    pub bucket: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// `https://endpoint/bucket/key` (true; MinIO and most on-premises stores) or
    /// `https://bucket.endpoint/key`.
    pub path_style: bool,
    /// Put before every object key, so one bucket can serve several installations.
    pub prefix: String,
    /// Bound on each request to the store.
    pub timeout_s: u64,
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            backend: FilesBackend::Local,
            endpoint: None,
            bucket: None,
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key: None,
            path_style: true,
            prefix: String::new(),
            timeout_s: 30,
        }
    }
}

impl std::fmt::Debug for FilesConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilesConfig")
            .field("backend", &self.backend)
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "***"))
            .field("path_style", &self.path_style)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl FilesConfig {
    /// The S3 settings, or why they are incomplete.
    pub fn s3_settings(&self) -> Result<S3Settings> {
        let need = |v: &Option<String>, key: &str| {
            v.clone()
                .filter(|s| !s.trim().is_empty())
                .with_context(|| format!("files.{key} is required when files.backend = \"s3\""))
        };
        S3Settings::parse(
            &need(&self.endpoint, "endpoint")?,
            &need(&self.bucket, "bucket")?,
            &self.region,
            &need(&self.access_key_id, "access_key_id")?,
            &need(
                &self.secret_access_key,
                "secret_access_key (or OFFSITE_FILES__SECRET_ACCESS_KEY)",
            )?,
            self.path_style,
            &self.prefix,
            Duration::from_secs(self.timeout_s.max(1)),
        )
    }
}

/// The configured file store, checked: a local directory is created, a bucket is asked whether it
/// exists and accepts the credentials, so a wrong setting stops the process at start with the reason.
pub async fn open(cfg: &Config) -> Result<Arc<dyn FileStore>> {
    match cfg.files.backend {
        FilesBackend::Local => {
            let dir = cfg.data_dir.join("files");
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            tracing::info!(dir = %dir.display(), "files in a local directory");
            Ok(Arc::new(LocalDirStore::new(dir)))
        }
        FilesBackend::S3 => {
            let settings = cfg.files.s3_settings()?;
            let store = S3Store::new(settings)?;
            store
                .check()
                .await
                .context("checking the file store ([files] backend = \"s3\")")?;
            let s = store.settings();
            tracing::info!(endpoint = %s.endpoint, bucket = s.bucket.as_str(), prefix = %s.prefix, "files in an S3-compatible bucket");
            Ok(Arc::new(store))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_from_the_file_and_the_secret_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("offsite.toml");
        std::fs::write(&f, "[files]\nbackend = \"s3\"\nendpoint = \"https://minio.example.cn:9000\"\nbucket = \"offsite\"\naccess_key_id = \"AK\"\n").unwrap();
        figment::Jail::expect_with(|jail| {
            let c = Config::load(Some(&f), None).unwrap();
            assert_eq!(c.files.backend, FilesBackend::S3);
            let e = c.files.s3_settings().unwrap_err().to_string();
            assert!(e.contains("secret_access_key"), "{e}");
            jail.set_env("OFFSITE_FILES__SECRET_ACCESS_KEY", "from-env");
            let c = Config::load(Some(&f), None).unwrap();
            let s = c.files.s3_settings().unwrap();
            assert_eq!(
                (s.bucket.as_str(), s.credentials.secret_access_key.as_str()),
                ("offsite", "from-env")
            );
            assert!(
                !format!("{:?}", c.files).contains("from-env"),
                "the secret is never printed"
            );
            Ok(())
        });
    }

    #[test]
    fn local_by_default() {
        figment::Jail::expect_with(|_| {
            assert_eq!(Config::load(None, None).unwrap().files.backend, FilesBackend::Local);
            Ok(())
        });
    }
}
