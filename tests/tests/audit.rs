//! `offsite audit verify` on the real binary: exit 0 on an intact chain, non-zero naming the first
//! break once a row is tampered with, removed, or the tail is cut.

use std::time::Duration;

use anyhow::Result;
use offsite_store::audit;
use offsite_store::{AuditEvent, AuditLog};
use offsite_tests::*;
use serde_json::{json, Value};

fn verify(site: &Site, extra: &[&str]) -> Result<(Option<i32>, String)> {
    let mut args = vec!["audit", "verify"];
    args.extend_from_slice(extra);
    let out = site.output(&args)?;
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.code(), text))
}

async fn sql(site: &Site, q: &str) -> Result<()> {
    sqlx::query(q).execute(site.db.store.pool()).await?;
    Ok(())
}

#[tokio::test]
async fn audit_verify_exit_status_names_the_first_break() -> Result<()> {
    let site = Site::new().await?;
    // An empty trail without anchors is intact.
    let (code, text) = verify(&site, &[])?;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("no anchors file"), "{text}");

    // The platform's writer, anchoring where `up` does.
    let anchors = audit::anchors_path(site.dir.path());
    let log = AuditLog::start(site.db.store.clone(), Some(anchors.clone()), Duration::from_secs(60));
    for i in 1..=8 {
        log.record(
            AuditEvent::new("admin", "rule.update", "rule")
                .ip("192.0.2.1")
                .id(i.to_string())
                .before(json!({"limit": i}))
                .after(json!({"limit": i * 10})),
        )
        .await?;
    }
    log.shutdown().await?;
    assert!(std::fs::read_to_string(&anchors)?.lines().last().unwrap().starts_with("8 "));

    let (code, text) = verify(&site, &[])?;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("seq 8") && text.contains("intact"), "{text}");
    let (code, text) = verify(&site, &["--json"])?;
    assert_eq!(code, Some(0), "{text}");
    let report: Value = serde_json::from_str(text.lines().find(|l| l.starts_with('{')).unwrap())?;
    assert_eq!((report["intact"].clone(), report["events"].clone()), (json!(true), json!(8)));
    assert_eq!(report["anchors_checked"], 2, "the start anchor (seq 0) and the shutdown anchor: {report}");

    // A DBA disables the trigger and edits a row.
    sql(&site, "ALTER TABLE audit_events DISABLE TRIGGER USER").await?;
    sql(&site, "UPDATE audit_events SET after = '{\"limit\": 1}' WHERE seq = 5").await?;
    let (code, text) = verify(&site, &[])?;
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("seq 5") && text.contains("hash mismatch"), "{text}");
    let (code, text) = verify(&site, &["--json"])?;
    assert_eq!(code, Some(2), "{text}");
    let report: Value = serde_json::from_str(text.lines().find(|l| l.starts_with('{')).unwrap())?;
    assert_eq!(report["first_break"]["seq"], 5);
    assert_eq!(report["first_break"]["kind"], "tampered");

    // Deleting a row instead.
    sql(&site, "UPDATE audit_events SET after = '{\"limit\": 50}' WHERE seq = 5").await?;
    assert_eq!(verify(&site, &[])?.0, Some(0), "restored");
    sql(&site, "DELETE FROM audit_events WHERE seq = 3").await?;
    let (code, text) = verify(&site, &[])?;
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("seq 3") && text.contains("missing"), "{text}");

    // Cutting the tail: only the anchors tell.
    let site2 = Site::new().await?;
    let log =
        AuditLog::start(site2.db.store.clone(), Some(audit::anchors_path(site2.dir.path())), Duration::from_secs(60));
    for i in 1..=6 {
        log.record(AuditEvent::system("analytics", "warning.open", "warning").id(i.to_string())).await?;
    }
    log.shutdown().await?;
    sql(&site2, "ALTER TABLE audit_events DISABLE TRIGGER USER").await?;
    sql(&site2, "DELETE FROM audit_events WHERE seq > 4").await?;
    let (code, text) = verify(&site2, &[])?;
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("seq 5") && text.contains("truncated"), "{text}");
    // Without anchors the cut is invisible (which is why they exist), and a named file must exist.
    let elsewhere = site2.dir.path().join("empty.log");
    std::fs::write(&elsewhere, "")?;
    assert_eq!(verify(&site2, &["--anchors", elsewhere.to_str().unwrap()])?.0, Some(0));
    let (code, text) = verify(&site2, &["--anchors", "/nonexistent/anchors.log"])?;
    assert_eq!(code, Some(1), "{text}");
    Ok(())
}
