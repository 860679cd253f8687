//! Stored files (task attachments, case documents, camera snapshots): content-addressed bytes
//! behind one interface, so a local directory and an S3-compatible bucket ([`crate::s3`]) are the
//! same to every caller. The
//! `files` table says what a hash is (size, type); the bytes live in the [`FileStore`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::Store;

/// Where file contents live, addressed by their SHA-256 (lower-case hex).
#[async_trait]
pub trait FileStore: Send + Sync + 'static {
    /// Stores `data` (idempotent: the same bytes give the same key) and returns its SHA-256.
    async fn put(&self, data: &[u8]) -> Result<String>;
    /// The bytes stored under `sha256`, if any.
    async fn get(&self, sha256: &str) -> Result<Option<Vec<u8>>>;
    /// Removes the bytes under `sha256` (retention); `false` when there were none.
    async fn delete(&self, sha256: &str) -> Result<bool>;
    /// Whether bytes are stored under `sha256`.
    async fn exists(&self, sha256: &str) -> Result<bool> {
        Ok(self.get(sha256).await?.is_some())
    }
}

/// Files in a local directory, `<root>/<aa>/<bb>/<sha256>`, written to a temporary name, synced and
/// renamed so a crash never leaves a half-written file under a valid name.
#[derive(Debug, Clone)]
pub struct LocalDirStore {
    root: PathBuf,
}

impl LocalDirStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, sha256: &str) -> Option<PathBuf> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return None;
        }
        Some(self.root.join(&sha256[0..2]).join(&sha256[2..4]).join(sha256))
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[async_trait]
impl FileStore for LocalDirStore {
    async fn put(&self, data: &[u8]) -> Result<String> {
        let sha = sha256_hex(data);
        let path = self.path_of(&sha).expect("a digest is a valid key");
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(sha);
        }
        let dir = path.parent().expect("nested path");
        tokio::fs::create_dir_all(dir).await.with_context(|| format!("creating {}", dir.display()))?;
        let tmp = dir.join(format!(".{sha}.{}.tmp", rand::random::<u32>()));
        let bytes = data.to_vec();
        let (tmp2, path2) = (tmp.clone(), path.clone());
        tokio::task::spawn_blocking(move || -> Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp2)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp2, &path2)?;
            Ok(())
        })
        .await?
        .with_context(|| format!("writing {}", path.display()))?;
        Ok(sha)
    }

    async fn get(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        let Some(path) = self.path_of(sha256) else { return Ok(None) };
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    async fn exists(&self, sha256: &str) -> Result<bool> {
        let Some(path) = self.path_of(sha256) else { return Ok(false) };
        Ok(tokio::fs::try_exists(&path).await.with_context(|| format!("looking up {}", path.display()))?)
    }

    async fn delete(&self, sha256: &str) -> Result<bool> {
        let Some(path) = self.path_of(sha256) else { return Ok(false) };
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("deleting {}", path.display())),
        }
    }
}

/// The type of a file by its first bytes. Attachments are images, PDF or office documents; anything
/// else is refused whatever its name or declared type.
pub fn sniff(data: &[u8]) -> Option<(&'static str, &'static str)> {
    if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(("image/jpeg", "jpg"))
    } else if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(("image/png", "png"))
    } else if data.starts_with(b"%PDF-") {
        Some(("application/pdf", "pdf"))
    } else if data.starts_with(b"PK\x03\x04") {
        // OOXML (docx/xlsx) is a zip; the portal checks the name's extension too.
        Some(("application/zip", "zip"))
    } else {
        None
    }
}

/// The type of an uploaded document by its content: JPEG, PNG, PDF, or a zip whose name says it
/// is DOCX or XLSX (OOXML is a zip). Returns (content type, extension); `None`: refused.
pub fn document_type(data: &[u8], filename: Option<&str>) -> Option<(&'static str, &'static str)> {
    match sniff(data)? {
        ("application/zip", _) => {
            let ext = filename.and_then(|n| n.rsplit_once('.')).map(|(_, e)| e.to_ascii_lowercase());
            match ext.as_deref() {
                Some("docx") => Some(("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx")),
                Some("xlsx") => Some(("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx")),
                _ => None,
            }
        }
        t => Some(t),
    }
}

/// Records what a stored file is (idempotent), inside the caller's transaction.
pub(crate) async fn record_file_in(conn: &mut sqlx::PgConnection, sha256: &str, size: i64, content_type: &str) -> Result<()> {
    sqlx::query("INSERT INTO files (sha256, size, content_type) VALUES ($1, $2, $3) ON CONFLICT (sha256) DO NOTHING")
        .bind(sha256)
        .bind(size)
        .bind(content_type)
        .execute(conn)
        .await?;
    Ok(())
}

impl Store {
    /// Records what a stored file is (idempotent).
    pub async fn record_file(&self, sha256: &str, size: i64, content_type: &str) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        record_file_in(&mut conn, sha256, size, content_type).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_store_is_content_addressed() {
        let dir = tempfile::tempdir().unwrap();
        let fs = LocalDirStore::new(dir.path());
        let a = fs.put(b"%PDF-1.4 hello").await.unwrap();
        assert_eq!(a, sha256_hex(b"%PDF-1.4 hello"));
        assert_eq!(fs.put(b"%PDF-1.4 hello").await.unwrap(), a, "same bytes, same key");
        assert_eq!(fs.get(&a).await.unwrap().as_deref(), Some(&b"%PDF-1.4 hello"[..]));
        assert_eq!(fs.get(&"0".repeat(64)).await.unwrap(), None);
        assert_eq!(fs.get("../../etc/passwd").await.unwrap(), None, "only digests are keys");
        assert!(dir.path().join(&a[0..2]).join(&a[2..4]).join(&a).exists());
    }

    #[test]
    fn documents_are_typed_by_content_and_zips_by_name() {
        assert_eq!(document_type(b"%PDF-1.7", Some("x.docx")), Some(("application/pdf", "pdf")));
        assert_eq!(document_type(b"PK\x03\x04rest", Some("报告.DOCX")).map(|t| t.1), Some("docx"));
        assert_eq!(document_type(b"PK\x03\x04rest", Some("表.xlsx")).map(|t| t.1), Some("xlsx"));
        assert_eq!(document_type(b"PK\x03\x04rest", Some("a.zip")), None);
        assert_eq!(document_type(b"MZ", Some("a.pdf")), None);
    }
}
