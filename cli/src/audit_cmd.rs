//! `offsite audit verify`: check the audit trail's hash chain against the anchors.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Subcommand;
use offsite_store::audit::{self, VerifyReport};
use serde_json::json;

use crate::configuration::Config;
use crate::startup::Database;

/// Exit status of `audit verify` when the chain is broken (1 means it could not be checked).
pub const EXIT_BROKEN: i32 = 2;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the audit trail (hash chain and anchors); name the first break.
    ///
    /// Safe while `up` or `demo` runs. Exit status: 0 the chain is intact, 2 it is broken,
    /// 1 it could not be checked.
    Verify {
        /// Anchors file to check against (an archived copy, say). Default
        /// `<data_dir>/audit/anchors.log`; when that does not exist only the chain itself is checked.
        #[arg(long)]
        anchors: Option<PathBuf>,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cfg: Config, cmd: AuditCommand) -> Result<()> {
    match cmd {
        AuditCommand::Verify { anchors, json } => {
            let path = match anchors {
                Some(p) if !p.exists() => bail!("no anchors file {}", p.display()),
                Some(p) => p,
                None => audit::anchors_path(&cfg.data_dir),
            };
            let db = Database::open(&cfg).await?;
            let report = audit::verify(&db.store, Some(&path)).await;
            db.close().await?;
            let report = report?;
            let mut o = std::io::stdout().lock();
            if json {
                writeln!(o, "{}", report_json(&report, &path))?;
            } else {
                print_report(&mut o, &report, &path)?;
            }
            o.flush()?;
            drop(o);
            if !report.intact() {
                std::process::exit(EXIT_BROKEN);
            }
            Ok(())
        }
    }
}

fn report_json(r: &VerifyReport, path: &std::path::Path) -> serde_json::Value {
    json!({
        "intact": r.intact(),
        "events": r.events,
        "head": r.head.map(|(seq, h)| json!({"seq": seq, "hash": hex(&h)})),
        "anchors_file": path,
        "anchors_read": r.anchors_read,
        "anchors_checked": r.anchors_checked,
        "first_break": r.first_break,
    })
}

fn print_report(o: &mut impl Write, r: &VerifyReport, path: &std::path::Path) -> Result<()> {
    match r.head {
        Some((seq, h)) => {
            writeln!(o, "审计事件 audit events: {}   链头 head: seq {seq} ({}…)", r.events, &hex(&h)[..16])?
        }
        None => writeln!(o, "审计事件 audit events: 0 (空 empty)")?,
    }
    match r.anchors_read {
        Some(n) => writeln!(
            o,
            "锚点 anchors: 已核对 {} / 共 {n} — {} of {n} checked ({})",
            r.anchors_checked,
            r.anchors_checked,
            path.display()
        )?,
        None => writeln!(
            o,
            "锚点 anchors: 未找到 {} — 仅检查链本身，无法发现截断或整体重写\n  \
             no anchors file: only the chain itself is checked; truncation or a full rewrite cannot be detected",
            path.display()
        )?,
    }
    match &r.first_break {
        None => writeln!(o, "结果 result: 完整 — the chain is intact")?,
        Some(b) => {
            let (zh, en) = b.kind.describe();
            writeln!(o, "结果 result: 已损坏 — the chain is BROKEN")?;
            writeln!(o, "第一个断点 first break: seq {} — {zh} / {en}", b.seq)?;
            writeln!(o, "  {}", b.detail)?;
        }
    }
    Ok(())
}

fn hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}
