//! `offsite certs init`: the development CA and the server certificate of an installation.
//!
//! One CA per installation signs the server certificate and the device certificates: devices
//! already trust it to reach the broker, and a browser or client that trusts `ca.pem` reaches the
//! portal's HTTPS with the same server certificate (`server.pem`/`server.key`). A production
//! installation can point `[portal] tls_cert`/`tls_key` at certificates from another CA instead.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use offsite_broker::pki::{self, ServerCertInit};

use crate::configuration::Config;

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Create the development CA and the server certificate (broker TLS and portal HTTPS).
    ///
    /// 创建开发用 CA 与服务器证书（MQTT/TLS 与门户 HTTPS 共用）。Subject alternative names:
    /// localhost, 127.0.0.1 and every --host. Running it again changes nothing unless a name is
    /// missing, and then only with --force; the CA is never replaced. Device certificates come
    /// from `offsite device add` (设备证书由 `offsite device add` 签发).
    Init(InitArgs),
    /// Write a configuration for Debian's mosquitto as the external broker.
    ///
    /// 为外部 mosquitto 代理生成配置：mosquitto.conf、ACL、内部账号的密码文件，以及 CA 与服务器证书的副本。
    /// Devices connect over MQTT/TLS with their certificates (CN = device id = user name), confined
    /// to their own topics by the ACL; the services use the internal account on a separate listener.
    Mosquitto(MosquittoArgs),
}

#[derive(Args)]
pub struct MosquittoArgs {
    /// Where the files are written.
    #[arg(long)]
    dir: PathBuf,
    /// The directory the configuration will live in on the broker host (default: --dir).
    #[arg(long)]
    conf_dir: Option<PathBuf>,
    /// The devices' TLS listener, `PORT` or `ADDRESS:PORT`.
    #[arg(long, default_value = "8883")]
    device_listen: String,
    /// The internal account's listener, `ADDRESS:PORT` (a private address).
    #[arg(long, default_value = "127.0.0.1:1883")]
    internal_listen: String,
    /// mosquitto's persistence directory (default: `<conf dir>/data/`).
    #[arg(long)]
    persistence_dir: Option<PathBuf>,
    /// The account mosquitto runs as when started as root (default: its own, `mosquitto`).
    #[arg(long)]
    user: Option<String>,
}

#[derive(Args)]
pub struct InitArgs {
    /// Where the CA and certificates go (default: `<data_dir>/pki`).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// A host name or IP address by which devices and people reach this server (repeatable).
    #[arg(long = "host", value_name = "NAME")]
    hosts: Vec<String>,
    /// Issue the server certificate and key again even though they exist.
    #[arg(long)]
    force: bool,
}

pub fn run(cfg: &Config, cmd: CertsCommand) -> Result<()> {
    match cmd {
        CertsCommand::Init(a) => {
            let dir = a.dir.unwrap_or_else(|| cfg.data_dir.join("pki"));
            let (pki, what) = pki::init(&dir, &a.hosts, a.force).context("offsite certs init")?;
            let said = match what {
                ServerCertInit::CreatedCa => {
                    "created the CA and the server certificate / 已创建 CA 与服务器证书".to_owned()
                }
                ServerCertInit::Kept => {
                    "certificates already in place, nothing changed / 证书已存在，未作改动"
                        .to_owned()
                }
                ServerCertInit::Reissued(why) => {
                    format!("issued the server certificate again ({why}) / 已重新签发服务器证书")
                }
            };
            println!("{said}");
            println!("CA          {}", pki.ca_path().display());
            println!("certificate {}", pki.server_cert_path().display());
            println!("key         {}", pki.server_key_path().display());
            Ok(())
        }
        CertsCommand::Mosquitto(a) => mosquitto(cfg, a),
    }
}

fn mosquitto(cfg: &Config, a: MosquittoArgs) -> Result<()> {
    use offsite_broker::mosquitto::{write_dir, Layout, CONF_FILE};
    let pki_dir = cfg.data_dir.join("pki");
    if !offsite_broker::Pki::has_ca(&pki_dir) {
        anyhow::bail!("no CA in {}: run `offsite certs init` first / 请先运行 offsite certs init", pki_dir.display());
    }
    let pki = offsite_broker::Pki::load_or_create(&pki_dir)?;
    let (device_bind, device_port) = match a.device_listen.rsplit_once(':') {
        Some((h, p)) => (Some(h.to_owned()), p.parse().context("--device-listen port")?),
        None => (None, a.device_listen.parse().context("--device-listen port")?),
    };
    let (internal_bind, internal_port) =
        a.internal_listen.rsplit_once(':').context("--internal-listen takes ADDRESS:PORT")?;
    std::fs::create_dir_all(&a.dir)?;
    let out = std::fs::canonicalize(&a.dir)?;
    let conf_dir = a.conf_dir.unwrap_or_else(|| out.clone());
    let layout = Layout {
        device_bind,
        device_port,
        internal_bind: internal_bind.to_owned(),
        internal_port: internal_port.parse().context("--internal-listen port")?,
        persistence_dir: a.persistence_dir.unwrap_or_else(|| conf_dir.join("data/")),
        conf_dir,
        run_as: a.user,
    };
    let password = crate::internal_mqtt::password(cfg)?;
    write_dir(&pki, &layout, &out, &password).context("offsite certs mosquitto")?;
    if layout.conf_dir == out {
        std::fs::create_dir_all(&layout.persistence_dir)?;
    }
    println!("wrote the mosquitto configuration / 已生成 mosquitto 配置: {}", out.join(CONF_FILE).display());
    println!("start it with / 启动: mosquitto -c {}", layout.conf_dir.join(CONF_FILE).display());
    Ok(())
}
