//! `offsite device add|list|revoke|rotate`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Subcommand;
use offsite_wire::{DeviceCredentials, DeviceId};

use crate::configuration::Config;
use crate::startup::{self, Database};

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// Provision a device and print its credentials (shown once; keep them safe).
    Add {
        /// Display name, e.g. "工地扬尘监测仪 3号".
        name: String,
        /// Regulated object the device belongs to.
        #[arg(long)]
        object: Option<String>,
        /// Write the credential bundle (JSON) to this file (mode 0600) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List devices.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Refuse the device from its next connection attempt on; its data is refused too.
    Revoke { id: String },
    /// Issue new credentials; the old token stops working at once.
    Rotate {
        id: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub async fn run(cfg: Config, cmd: DeviceCommand) -> Result<()> {
    let db = Database::open(&cfg).await?;
    let r = run_with(&cfg, &db, cmd).await;
    db.close().await?;
    r
}

async fn run_with(cfg: &Config, db: &Database, cmd: DeviceCommand) -> Result<()> {
    let store = &db.store;
    match cmd {
        DeviceCommand::Add { name, object, out } => {
            let pki = startup::pki(cfg)?;
            let (rec, creds) = offsite_broker::provision(store, &pki, &name, object).await?;
            emit(&creds, out)?;
            eprintln!("provisioned device {} ({}); credentials are shown only once", rec.id, rec.name);
        }
        DeviceCommand::List { json } => {
            let (items, total) = store.list_devices(10_000, 0).await?;
            let mut o = std::io::stdout().lock();
            if !json {
                writeln!(o, "{:<14} {:<7} {:<8} {:<25} NAME", "ID", "ONLINE", "REVOKED", "LAST SEEN (UTC)")?;
            }
            for d in &items {
                if json {
                    writeln!(o, "{}", serde_json::to_string(d)?)?;
                } else {
                    let seen = d.last_seen.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or("-".into());
                    writeln!(o, "{:<14} {:<7} {:<8} {:<25} {}", d.id, d.online, d.revoked_at.is_some(), seen, d.name)?;
                }
            }
            if !json {
                writeln!(o, "{total} device(s)")?;
            }
        }
        DeviceCommand::Revoke { id } => {
            let id = DeviceId::parse(&id)?;
            if !store.revoke_device(&id).await? {
                bail!("no device {id}");
            }
            eprintln!("device {id} revoked");
        }
        DeviceCommand::Rotate { id, out } => {
            let id = DeviceId::parse(&id)?;
            let pki = startup::pki(cfg)?;
            match offsite_broker::rotate(store, &pki, &id).await? {
                Some(creds) => {
                    emit(&creds, out)?;
                    eprintln!("device {id}: new credentials issued; the old token no longer works");
                }
                None => bail!("no active device {id}"),
            }
        }
    }
    Ok(())
}

fn emit(creds: &DeviceCredentials, out: Option<PathBuf>) -> Result<()> {
    let json = serde_json::to_string_pretty(creds)?;
    match out {
        Some(p) => write_secret(&p, json.as_bytes())?,
        None => println!("{json}"),
    }
    Ok(())
}

pub fn write_secret(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    Ok(())
}
