//! The S3-compatible file store against a real local object store (moto_server, with
//! authentication on): content-addressed round trips, and clear errors, never panics, for a wrong
//! key, a wrong secret, a missing bucket and an unreachable endpoint.

use std::time::Duration;

use anyhow::Result;
use offsite_store::files::{sha256_hex, FileStore};
use offsite_store::moto::MotoServer;
use offsite_store::s3::{S3Settings, S3Store};

fn store_for(m: &MotoServer, bucket: &str, key: &str, secret: &str, prefix: &str) -> Result<S3Store> {
    S3Store::new(S3Settings::parse(
        &m.endpoint(),
        bucket,
        &m.region,
        key,
        secret,
        true,
        prefix,
        Duration::from_secs(10),
    )?)
}

#[tokio::test]
async fn put_get_exists_delete_round_trip() -> Result<()> {
    let m = MotoServer::start("offsite-files").await?;
    let s = store_for(&m, &m.bucket, &m.access_key_id, &m.secret_access_key, "site-a")?;
    s.check().await?;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let sha = s.put(&data).await?;
    assert_eq!(sha, sha256_hex(&data));
    assert!(s.exists(&sha).await?);
    assert_eq!(s.put(&data).await?, sha, "the same bytes, the same key, stored once");
    assert_eq!(s.get(&sha).await?.as_deref(), Some(&data[..]), "byte-identical");
    // Another prefix in the same bucket is another installation.
    let other = store_for(&m, &m.bucket, &m.access_key_id, &m.secret_access_key, "site-b")?;
    assert!(!other.exists(&sha).await?);
    assert_eq!(other.get(&sha).await?, None);
    assert!(s.delete(&sha).await?);
    assert!(!s.exists(&sha).await?);
    assert_eq!(s.get(&sha).await?, None);
    assert!(!s.delete(&sha).await?, "nothing left to delete");
    // Only digests are keys.
    assert_eq!(s.get("../../etc/passwd").await?, None);
    assert!(!s.exists(&"A".repeat(64)).await?);
    // An empty file is a file too.
    let empty = s.put(b"").await?;
    assert_eq!(s.get(&empty).await?.as_deref(), Some(&b""[..]));
    Ok(())
}

#[tokio::test]
async fn wrong_credentials_and_missing_buckets_are_clear_errors() -> Result<()> {
    let m = MotoServer::start("offsite-files").await?;
    let data = b"%PDF-1.4 report";

    let wrong_key = store_for(&m, &m.bucket, "AKIANOTAKEY00000000", &m.secret_access_key, "")?;
    let e = format!("{:#}", wrong_key.check().await.unwrap_err());
    assert!(e.contains("access refused") && e.contains("files.access_key_id"), "{e}");
    let e = format!("{:#}", wrong_key.put(data).await.unwrap_err());
    assert!(e.contains("access refused"), "{e}");

    let wrong_secret = store_for(&m, &m.bucket, &m.access_key_id, "not-the-secret", "")?;
    let e = format!("{:#}", wrong_secret.put(data).await.unwrap_err());
    assert!(e.contains("access refused"), "{e}");
    // moto checks the signature itself (a GET's error body names the reason).
    let e = format!("{:#}", wrong_secret.get(&sha256_hex(data)).await.unwrap_err());
    assert!(e.contains("access refused") && e.contains("SignatureDoesNotMatch"), "{e}");

    let no_bucket = store_for(&m, "no-such-bucket", &m.access_key_id, &m.secret_access_key, "")?;
    let e = format!("{:#}", no_bucket.check().await.unwrap_err());
    assert!(e.contains("\"no-such-bucket\" does not exist"), "{e}");
    let e = format!("{:#}", no_bucket.put(data).await.unwrap_err());
    assert!(e.contains("does not exist"), "{e}");
    let e = format!("{:#}", no_bucket.get(&sha256_hex(data)).await.unwrap_err());
    assert!(e.contains("does not exist"), "{e}");

    // The right key still works beside them.
    let ok = store_for(&m, &m.bucket, &m.access_key_id, &m.secret_access_key, "")?;
    let sha = ok.put(data).await?;
    assert_eq!(ok.get(&sha).await?.as_deref(), Some(&data[..]));

    // Nobody listening: a connection error naming the endpoint, after the retries.
    let port = m.port;
    drop(m);
    let gone = S3Store::new(S3Settings::parse(
        &format!("http://127.0.0.1:{port}"),
        "offsite-files",
        "us-east-1",
        "k",
        "s",
        true,
        "",
        Duration::from_secs(2),
    )?)?;
    let e = format!("{:#}", gone.get(&sha).await.unwrap_err());
    assert!(e.contains("could not connect") && e.contains(&port.to_string()), "{e}");
    Ok(())
}
