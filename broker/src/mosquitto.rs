//! Configuration for Debian's mosquitto as an external broker (scaled-out deployments).
//!
//! Our broker confines a device by its certificate (rumqttd's tenant prefix). mosquitto gets the
//! same rule from `use_identity_as_username` (the certificate's CN, which is the device id, becomes
//! the user name) and ACL `pattern` lines over `%u`. The files in `deploy/mosquitto/` are what
//! [`render_conf`] and [`render_acl`] produce for [`Layout::shipped`]; a test keeps them equal, so
//! the shipped files are the ones the tests and `offsite bench ingest --external-broker` run.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::pki::{write_file, Pki};
use crate::INTERNAL_USERNAME;

/// Files written into the broker's configuration directory.
pub const CONF_FILE: &str = "mosquitto.conf";
pub const ACL_FILE: &str = "acl";
pub const PASSWORD_FILE: &str = "passwd";
pub const CA_FILE: &str = "ca.pem";
pub const CERT_FILE: &str = "server.pem";
pub const KEY_FILE: &str = "server.key";

/// Where mosquitto listens and where its files are.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The devices' MQTT/TLS listener: (bind address, port); `None` binds every interface.
    pub device_bind: Option<String>,
    pub device_port: u16,
    /// The internal account's listener (services only: keep it on a private address).
    pub internal_bind: String,
    pub internal_port: u16,
    /// Directory holding the conf, ACL, password file, CA and server certificate.
    pub conf_dir: PathBuf,
    /// mosquitto's persistence directory (retained status messages, sessions).
    pub persistence_dir: PathBuf,
    /// `user` line: the account mosquitto drops to when started as root (`None`: its default,
    /// `mosquitto`, which must then be able to read the key).
    pub run_as: Option<String>,
}

impl Layout {
    /// The layout of the files shipped in `deploy/mosquitto/`.
    pub fn shipped() -> Self {
        Layout {
            device_bind: None,
            device_port: 8883,
            internal_bind: "127.0.0.1".into(),
            internal_port: 1883,
            conf_dir: "/etc/mosquitto/offsite".into(),
            persistence_dir: "/var/lib/mosquitto/".into(),
            run_as: None,
        }
    }
}

/// mosquitto.conf for `layout`.
pub fn render_conf(l: &Layout) -> String {
    let d = |f: &str| l.conf_dir.join(f).display().to_string();
    let mut s = String::new();
    s.push_str(
        "# offsite on Debian's mosquitto (2.0): written by `offsite certs mosquitto`.\n\
         # Devices: MQTT/TLS with a certificate from the installation's CA; the certificate's CN (the\n\
         # device id) is the user name and the client id, and the ACL confines it to its own topics.\n\
         # Services (ingest, portal, analytics): the internal account, by password, on its own listener.\n\n",
    );
    if let Some(u) = &l.run_as {
        let _ = writeln!(s, "user {u}");
    }
    s.push_str(
        "# Each listener has its own authentication (certificate or password file).\n\
         per_listener_settings true\n\n\
         # Retained device status (presence) and queued QoS 1 messages survive a restart.\n\
         persistence true\n",
    );
    let _ = writeln!(s, "persistence_location {}", l.persistence_dir.display());
    s.push_str(
        "autosave_interval 30\n\
         # The service subscriptions take QoS 1 bursts from thousands of devices: the default of\n\
         # 1000 queued messages per client drops them. Devices resend what is not acknowledged.\n\
         max_queued_messages 1000000\n\
         max_inflight_messages 1000\n\
         # Ingest dead-letters batches over 256 KiB; the broker's limit is above it so they are counted.\n\
         max_packet_size 1048576\n\
         log_dest stderr\n\
         log_type error\n\
         log_type warning\n\
         log_type notice\n\
         connection_messages true\n\n",
    );
    s.push_str("# Devices.\n");
    match &l.device_bind {
        Some(b) => {
            let _ = writeln!(s, "listener {} {b}", l.device_port);
        }
        None => {
            let _ = writeln!(s, "listener {}", l.device_port);
        }
    }
    let _ = writeln!(s, "allow_anonymous false");
    let _ = writeln!(s, "cafile {}", d(CA_FILE));
    let _ = writeln!(s, "certfile {}", d(CERT_FILE));
    let _ = writeln!(s, "keyfile {}", d(KEY_FILE));
    s.push_str(
        "tls_version tlsv1.2\n\
         require_certificate true\n\
         use_identity_as_username true\n\
         # One connection per device id: another device cannot take over its session.\n\
         use_username_as_clientid true\n",
    );
    let _ = writeln!(s, "acl_file {}\n", d(ACL_FILE));
    s.push_str("# The internal account (services). Bind it to a private address only.\n");
    let _ = writeln!(s, "listener {} {}", l.internal_port, l.internal_bind);
    let _ = writeln!(s, "allow_anonymous false");
    let _ = writeln!(s, "password_file {}", d(PASSWORD_FILE));
    let _ = writeln!(s, "acl_file {}", d(ACL_FILE));
    s
}

/// The ACL: devices (user = certificate CN = device id) on exactly their protocol channels
/// (docs/protocol.md), the internal account on every device's channels and `offsite/#`.
pub fn render_acl() -> String {
    format!(
        "# offsite: who may use which topic (mosquitto acl_file).\n\
         # A device writes data, status (and its will), event and cmd/ack, and reads ack and cmd,\n\
         # under its own id only. %u is the certificate's CN, which is the device id.\n\
         pattern write /tenants/%u/v1/data\n\
         pattern write /tenants/%u/v1/status\n\
         pattern write /tenants/%u/v1/event\n\
         pattern write /tenants/%u/v1/cmd/ack\n\
         pattern read /tenants/%u/v1/ack\n\
         pattern read /tenants/%u/v1/cmd\n\
         \n\
         # The services: ingest reads every device's channels (through $share subscriptions) and\n\
         # acknowledges; the portal sends commands; tiers talk to each other under offsite/.\n\
         user {INTERNAL_USERNAME}\n\
         topic read /tenants/+/v1/data\n\
         topic read /tenants/+/v1/status\n\
         topic read /tenants/+/v1/event\n\
         topic read /tenants/+/v1/cmd/ack\n\
         topic write /tenants/+/v1/ack\n\
         topic write /tenants/+/v1/cmd\n\
         topic readwrite offsite/#\n"
    )
}

/// Writes a complete configuration directory for `layout.conf_dir`'s contents into `out`: the
/// conf, the ACL, a copy of the CA and server certificate and key, and the internal account's
/// password file (made with `mosquitto_passwd`, which stores a salted PBKDF2-SHA512 hash).
pub fn write_dir(pki: &Pki, layout: &Layout, out: &Path, internal_password: &str) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    write_file(&out.join(CONF_FILE), render_conf(layout).as_bytes(), 0o644)?;
    write_file(&out.join(ACL_FILE), render_acl().as_bytes(), 0o644)?;
    write_file(&out.join(CA_FILE), pki.ca_pem().as_bytes(), 0o644)?;
    let copy = |from: PathBuf, to: &str, mode: u32| -> Result<()> {
        let bytes = std::fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
        write_file(&out.join(to), &bytes, mode)
    };
    copy(pki.server_cert_path(), CERT_FILE, 0o644)?;
    copy(pki.server_key_path(), KEY_FILE, 0o600)?;
    let pw = out.join(PASSWORD_FILE);
    let _ = std::fs::remove_file(&pw);
    let st = Command::new("mosquitto_passwd")
        .arg("-c")
        .arg("-b")
        .arg(&pw)
        .arg(INTERNAL_USERNAME)
        .arg(internal_password)
        .stdout(Stdio::null())
        .status()
        .context(
            "running mosquitto_passwd (install the mosquitto package) / 无法运行 mosquitto_passwd",
        )?;
    if !st.success() {
        bail!("mosquitto_passwd failed ({st})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_files_are_what_the_renderer_writes() {
        assert_eq!(
            include_str!("../../deploy/mosquitto/mosquitto.conf"),
            render_conf(&Layout::shipped())
        );
        assert_eq!(include_str!("../../deploy/mosquitto/acl"), render_acl());
    }

    #[test]
    fn devices_get_exactly_their_channels() {
        let acl = render_acl();
        let patterns: Vec<&str> = acl.lines().filter(|l| l.starts_with("pattern ")).collect();
        assert_eq!(patterns.len(), 6);
        assert!(
            patterns.iter().all(|l| l.contains(" /tenants/%u/v1/")),
            "{patterns:?}"
        );
        assert!(
            !acl.contains("pattern readwrite"),
            "no device may read what it writes or write what it reads"
        );
    }
}
