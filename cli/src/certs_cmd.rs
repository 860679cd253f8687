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
    }
}
