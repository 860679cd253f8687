//! `offsite device add|list|revoke|rotate`.

use std::io::Write;
use std::path::PathBuf;

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use offsite_store::AuditEvent;
use offsite_wire::{Channel, Command, CommandAction, DeviceCredentials, DeviceId, SourceSettings, Topic};

use crate::configuration::Config;
use crate::startup::{self, Database};

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// Provision a device and print its credentials (shown once; keep them safe).
    ///
    /// The device certificate is signed by the installation's CA (`offsite certs init` makes the
    /// CA and the server certificate; device certificates come only from here).
    Add {
        /// Display name, e.g. "工地扬尘监测仪 3号".
        name: String,
        /// Regulated object the device belongs to.
        #[arg(long)]
        object: Option<String>,
        /// Kind of device, e.g. `dust-monitor` (rules can cover a whole class). Loggers: `hj212`
        /// unless given.
        #[arg(long)]
        class: Option<String>,
        /// Write the credential bundle (JSON) to this file (mode 0600) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// An HJ 212-2017 data logger (connects to the HJ 212 gateway, not MQTT): needs --mn and --pw.
        /// Its device id is the MN when that is 1-32 letters and digits, else hj + 30 hex digits of SHA-256(MN).
        #[arg(long, requires_all = ["mn", "pw"])]
        hj212: bool,
        /// The logger's MN (设备唯一标识).
        #[arg(long, requires = "hj212")]
        mn: Option<String>,
        /// The logger's PW (访问密码); stored only as a SHA-256 digest.
        #[arg(long, requires = "hj212")]
        pw: Option<String>,
    },
    /// List devices.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Refuse the device from its next connection attempt on; its data is refused too.
    Revoke { id: String },
    /// Change a device's sources remotely (its edge agent applies, keeps and acknowledges it), and
    /// wait for the answer. A device that is offline gets the command when it reconnects.
    ///
    /// Example: offsite device config D1 --interval dust=5000 --disable plc
    Config {
        id: String,
        /// New sampling interval of a source, SOURCE=MILLISECONDS (repeatable).
        #[arg(long = "interval", value_name = "SOURCE=MS")]
        intervals: Vec<String>,
        /// Switch a source on (repeatable).
        #[arg(long, value_name = "SOURCE")]
        enable: Vec<String>,
        /// Switch a source off (repeatable).
        #[arg(long, value_name = "SOURCE")]
        disable: Vec<String>,
        /// Seconds to wait for the device's answer (0: do not wait).
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
    /// Command an HJ 212 logger over its open connection: clock sync (CN 1012) or real-time interval
    /// (CN 1062), and wait for its 9011/9012 answer. Sent when the logger is (or next is) connected.
    ///
    /// Example: offsite device hj212 SQ0000000000000000000001 --interval 60
    Hj212 {
        id: String,
        /// Set the logger's clock to the platform's.
        #[arg(long, conflicts_with = "interval", required_unless_present = "interval")]
        sync_clock: bool,
        /// Real-time data interval in seconds (30..=3600).
        #[arg(long, value_parser = clap::value_parser!(u32).range(30..=3600))]
        interval: Option<u32>,
        /// Seconds to wait for the logger's answer (0: do not wait).
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
    /// The commands sent to a device and its answers, newest first (JSON lines).
    Commands {
        id: String,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Issue new credentials; the old token stops working at once.
    Rotate {
        id: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub async fn run(cfg: Config, cmd: DeviceCommand) -> Result<()> {
    let db = Database::open(&cfg).await?;
    let audit = offsite_store::AuditLog::start(
        db.store.clone(),
        Some(offsite_store::audit::anchors_path(&cfg.data_dir)),
        offsite_store::audit::DEFAULT_ANCHOR_EVERY,
    );
    let r = run_with(&cfg, &db, &audit, cmd).await;
    if let Err(e) = audit.shutdown().await {
        eprintln!("warning: closing the audit trail: {e:#}");
    }
    db.close().await?;
    r
}

/// Who made a change from the command line: the operating-system user.
fn actor() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}

async fn run_with(cfg: &Config, db: &Database, audit: &offsite_store::AuditLog, cmd: DeviceCommand) -> Result<()> {
    let store = &db.store;
    match cmd {
        DeviceCommand::Add { name, object, class, out, hj212, mn, pw } => {
            if let Some(c) = &class {
                if c.is_empty() || c.len() > 64 || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
                    bail!("--class must be 1-64 characters of A-Z a-z 0-9 _ . -");
                }
            }
            if hj212 {
                let (Some(mn), Some(pw)) = (mn, pw) else { bail!("--hj212 needs --mn and --pw") };
                let rec = store.insert_hj212_logger(&name, object, &mn, &pw).await?;
                let id = DeviceId::parse(&rec.id)?;
                if class.is_some() {
                    store.set_device_class(&id, class.as_deref()).await?;
                }
                let class = class.or_else(|| Some(offsite_store::hj212::LOGGER_CLASS.into()));
                audit
                    .record(
                        AuditEvent::new(actor(), "device.provision", "device").id(rec.id.clone()).after(
                            serde_json::json!({"name": rec.name, "object_id": rec.object_id, "class": class, "hj212_mn": mn}),
                        ),
                    )
                    .await?;
                println!("{}", serde_json::json!({"device_id": rec.id, "hj212_mn": mn}));
                eprintln!("registered HJ 212 logger {} (MN {mn}) as device {}", rec.name, rec.id);
                return Ok(());
            }
            let pki = startup::pki(cfg)?;
            let (rec, creds) = offsite_broker::provision(store, &pki, &name, object).await?;
            if class.is_some() {
                store.set_device_class(&creds.device_id, class.as_deref()).await?;
            }
            emit(&creds, out)?;
            audit
                .record(
                    AuditEvent::new(actor(), "device.provision", "device")
                        .id(rec.id.clone())
                        .after(serde_json::json!({"name": rec.name, "object_id": rec.object_id, "class": class})),
                )
                .await?;
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
            audit.record(AuditEvent::new(actor(), "device.revoke", "device").id(id.to_string())).await?;
            eprintln!("device {id} revoked");
        }
        DeviceCommand::Config { id, intervals, enable, disable, wait } => {
            let sources = source_settings(&intervals, &enable, &disable)?;
            audit
                .record(AuditEvent::new(actor(), "device.configure", "device").id(id.clone()).after(serde_json::json!(sources)))
                .await?;
            send_config(cfg, store, &id, sources, wait).await?;
        }
        DeviceCommand::Hj212 { id, sync_clock, interval, wait } => {
            let device = DeviceId::parse(&id)?;
            let Some(d) = store.device(&device).await? else { bail!("no device {id}") };
            if d.revoked_at.is_some() {
                bail!("device {id} is revoked");
            }
            let (kind, action) = match interval {
                Some(seconds) if !sync_clock => ("set_interval", CommandAction::SetInterval { seconds }),
                _ => ("sync_clock", CommandAction::SyncClock),
            };
            let cmd = Command { id: new_command_id(), action };
            let body = serde_json::to_value(&cmd)?;
            audit.record(AuditEvent::new(actor(), "device.command", "device").id(id.clone()).after(body.clone())).await?;
            // The gateway holding the logger's connection picks it up from device_commands.
            store.insert_command(&cmd.id, d.key, kind, &body, Some(&actor())).await?;
            eprintln!("command {} recorded for {device}", cmd.id);
            wait_answer(store, &device, &cmd.id, wait).await?;
        }
        DeviceCommand::Commands { id, limit } => {
            let Some(d) = store.device(&DeviceId::parse(&id)?).await? else { bail!("no device {id}") };
            let mut o = std::io::stdout().lock();
            for c in store.device_commands(d.key, limit).await? {
                writeln!(o, "{}", serde_json::to_string(&c)?)?;
            }
        }
        DeviceCommand::Rotate { id, out } => {
            let id = DeviceId::parse(&id)?;
            let pki = startup::pki(cfg)?;
            match offsite_broker::rotate(store, &pki, &id).await? {
                Some(creds) => {
                    emit(&creds, out)?;
                    audit.record(AuditEvent::new(actor(), "device.rotate", "device").id(id.to_string())).await?;
                    eprintln!("device {id}: new credentials issued; the old token no longer works");
                }
                None => bail!("no active device {id}"),
            }
        }
    }
    Ok(())
}

/// Builds the per-source settings of a `configure` command from the command-line flags.
fn source_settings(
    intervals: &[String],
    enable: &[String],
    disable: &[String],
) -> Result<BTreeMap<String, SourceSettings>> {
    let mut sources: BTreeMap<String, SourceSettings> = BTreeMap::new();
    for i in intervals {
        let Some((name, ms)) = i.split_once('=') else { bail!("--interval wants SOURCE=MILLISECONDS, got {i:?}") };
        let ms: u64 = ms.trim().parse().with_context(|| format!("--interval {i:?}: not a number of milliseconds"))?;
        if !(10..=86_400_000).contains(&ms) {
            bail!("--interval {i:?}: between 10 ms and one day");
        }
        sources.entry(name.trim().to_owned()).or_default().interval_ms = Some(ms);
    }
    for (names, on) in [(enable, true), (disable, false)] {
        for n in names {
            let e = sources.entry(n.clone()).or_default();
            if e.enabled.is_some_and(|v| v != on) {
                bail!("source {n:?} is both enabled and disabled");
            }
            e.enabled = Some(on);
        }
    }
    if sources.is_empty() {
        bail!("nothing to change: give --interval, --enable or --disable");
    }
    Ok(sources)
}

async fn send_config(
    cfg: &Config,
    store: &offsite_store::Store,
    id: &str,
    sources: BTreeMap<String, SourceSettings>,
    wait: u64,
) -> Result<()> {
    let device = DeviceId::parse(id)?;
    let Some(d) = store.device(&device).await? else { bail!("no device {id}") };
    if d.revoked_at.is_some() {
        bail!("device {id} is revoked");
    }
    let cmd = Command { id: new_command_id(), action: CommandAction::Configure { sources } };
    let body = serde_json::to_value(&cmd)?;
    let who = std::env::var("USER").ok();
    // Recorded before sending, so an answer can never arrive for a command the platform does not know.
    store.insert_command(&cmd.id, d.key, "configure", &body, who.as_deref()).await?;
    let topic = Topic::new(device.clone(), Channel::Cmd).render();
    if let Err(e) = crate::internal_mqtt::publish_once(cfg, &topic, cmd.encode()).await {
        eprintln!("command {} recorded but not sent now ({e:#}); it is sent when the device next comes online", cmd.id);
        return Ok(());
    }
    eprintln!("command {} sent to {device}", cmd.id);
    wait_answer(store, &device, &cmd.id, wait).await
}

/// Waits up to `wait` seconds for a device's answer to a command and prints it.
async fn wait_answer(store: &offsite_store::Store, device: &DeviceId, command_id: &str, wait: u64) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait);
    loop {
        let c = store.command(command_id).await?.context("command row vanished")?;
        if c.acked_at.is_some() {
            println!("{}", serde_json::to_string(&c)?);
            if c.ok != Some(true) {
                bail!("device {device} refused command {}: {}", c.id, c.error.unwrap_or_default());
            }
            eprintln!("device {device} applied command {}", c.id);
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            eprintln!("no answer from {device} yet; it will be recorded when it comes (offsite device commands {device})");
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Time-ordered, unique enough across processes: `c` + ms since the epoch + random suffix.
fn new_command_id() -> String {
    format!("c{}-{:08x}", chrono::Utc::now().timestamp_millis(), rand::random::<u32>())
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
