//! The installation's private certificate authority.
//!
//! Devices authenticate twice: the TLS client certificate (signed here) fixes the topic prefix
//! they may use, the random token (see [`crate::provision`]) ties them to the registry so a
//! revocation or rotation takes effect at the next connection. This module only deals with the
//! certificates.
//!
//! Layout of the directory (normally `<data_dir>/pki/`):
//! `ca.pem`, `ca.key` (0600), `server.pem`, `server.key` (0600).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use offsite_wire::DeviceId;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use tracing::info;

const CA_CN: &str = "offsite device CA";
const CA_DAYS: i64 = 3652;
/// The broker certificate lives as long as the CA: nothing renews it, and devices only check it
/// against our own CA, so the public-web 398/825-day limits do not apply.
const SERVER_DAYS: i64 = 3652;
/// Certificates start a little in the past so a device whose clock lags still accepts them.
const BACKDATE_SECS: i64 = 300;
/// A server certificate this close to expiry is replaced at the next start.
const RENEW_BEFORE_SECS: i64 = 30 * 86_400;

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
const SERVER_CERT: &str = "server.pem";
const SERVER_KEY: &str = "server.key";

/// A certificate and key just issued, with what the registry records about it.
#[derive(Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub serial_hex: String,
    pub not_after: DateTime<Utc>,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("serial_hex", &self.serial_hex)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// The CA (certificate and signing key) plus the paths the broker's TLS listener reads.
/// Cheap to clone.
#[derive(Clone)]
pub struct Pki {
    dir: PathBuf,
    ca_pem: String,
    ca_key: Arc<KeyPair>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Pki {
    /// Loads the CA from `dir`, creating the CA and the broker's `localhost` certificate on first
    /// use. A missing server certificate (CA present) is issued again.
    ///
    /// First creation happens in a sibling temporary directory that is renamed into place, so two
    /// processes starting at once on a fresh installation end up with one consistent CA.
    pub fn load_or_create(dir: &Path) -> Result<Pki> {
        Self::load_or_create_for_hosts(dir, &[])
    }

    /// As [`Pki::load_or_create`], with further host names or IP addresses by which devices reach
    /// the broker put in the server certificate besides `localhost` and `127.0.0.1` (devices
    /// verify the name they connect to). A server certificate that lacks one of them, or expires
    /// within 30 days, is issued again; rumqttd reads the files at every TLS connection, so a
    /// running broker picks the new one up.
    pub fn load_or_create_for_hosts(dir: &Path, hosts: &[String]) -> Result<Pki> {
        let names = server_names(hosts);
        if !dir.join(CA_CERT).exists() {
            create_fresh(dir, &names)?;
        }
        let ca_pem = read(&dir.join(CA_CERT))?;
        let ca_key = KeyPair::from_pem(&read(&dir.join(CA_KEY))?)
            .with_context(|| format!("parsing {}", dir.join(CA_KEY).display()))?;
        // Fails early on a CA file that rcgen cannot use for signing.
        Issuer::from_ca_cert_pem(&ca_pem, &ca_key)
            .with_context(|| format!("parsing {}", dir.join(CA_CERT).display()))?;
        let pki = Pki { dir: dir.to_owned(), ca_pem, ca_key: Arc::new(ca_key) };
        let mut names = names;
        let reissue = if !pki.server_cert_path().exists() || !pki.server_key_path().exists() {
            Some("missing".to_owned())
        } else {
            server_cert_problem(&read(&pki.server_cert_path())?, &mut names)
        };
        if let Some(why) = reissue {
            info!(dir = %dir.display(), why, "issuing a new broker certificate");
            let issuer = Issuer::from_ca_cert_pem(&pki.ca_pem, &*pki.ca_key).context("loading the CA")?;
            let (cert, key) = issue_server_with(&issuer, &names)?;
            write_file(&pki.server_key_path(), key.as_bytes(), 0o600)?;
            write_file(&pki.server_cert_path(), cert.as_bytes(), 0o644)?;
        }
        Ok(pki)
    }

    /// Whether `dir` holds a CA already: a process that only signs for the broker (the portal)
    /// must use the broker's CA, never start a new one.
    pub fn has_ca(dir: &Path) -> bool {
        dir.join(CA_CERT).exists() && dir.join(CA_KEY).exists()
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join(CA_CERT)
    }

    pub fn server_cert_path(&self) -> PathBuf {
        self.dir.join(SERVER_CERT)
    }

    pub fn server_key_path(&self) -> PathBuf {
        self.dir.join(SERVER_KEY)
    }

    /// Issues a client certificate for `device`, valid for `days` days.
    ///
    /// Subject O and CN are both the device id: rumqttd (feature `validate-tenant-prefix`) takes
    /// the tenant, and so the only topic prefix the device may use, from O; mosquitto's
    /// `use_identity_as_username` takes CN, so the same certificate works behind either broker.
    pub fn issue_device(&self, device: &DeviceId, days: u32) -> Result<IssuedCert> {
        let key = KeyPair::generate().context("generating a device key")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, device.as_str());
        dn.push(DnType::CommonName, device.as_str());
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let serial = random_serial();
        let serial_hex = hex::encode(&serial);
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let now = Utc::now().timestamp();
        let not_after = now + i64::from(days) * 86_400;
        params.not_before = to_time(now - BACKDATE_SECS)?;
        params.not_after = to_time(not_after)?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_pem, &*self.ca_key).context("loading the CA")?;
        let cert = params.signed_by(&key, &issuer).context("signing a device certificate")?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial_hex,
            not_after: DateTime::from_timestamp(not_after, 0).context("certificate expiry out of range")?,
        })
    }
}

/// What [`init`] did with the server certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCertInit {
    /// A new CA and server certificate were made.
    CreatedCa,
    /// The server certificate already covered every name and was kept.
    Kept,
    /// The server certificate (and its key) were issued again, for this reason.
    Reissued(String),
}

/// `offsite certs init`: the development CA and the server certificate that both the broker's TLS
/// listener and the portal's HTTPS use, for `localhost`, `127.0.0.1` and `hosts`.
///
/// Idempotent: a run with nothing to do changes nothing. A server certificate that lacks a name or
/// is near expiry is replaced only with `force` (its key is replaced with it); the CA is never
/// replaced here, because every device certificate depends on it.
pub fn init(dir: &Path, hosts: &[String], force: bool) -> Result<(Pki, ServerCertInit)> {
    if !Pki::has_ca(dir) {
        if dir.join(SERVER_KEY).exists() && !force {
            anyhow::bail!(
                "{} holds a server key but no CA; refusing to overwrite it without --force",
                dir.display()
            );
        }
        let pki = Pki::load_or_create_for_hosts(dir, hosts)?;
        return Ok((pki, ServerCertInit::CreatedCa));
    }
    let mut names = server_names(hosts);
    let problem = if !dir.join(SERVER_CERT).exists() || !dir.join(SERVER_KEY).exists() {
        Some("missing".to_owned())
    } else {
        server_cert_problem(&read(&dir.join(SERVER_CERT))?, &mut names)
    };
    let why = match (problem, force) {
        (None, false) => return Ok((Pki::load_or_create(dir)?, ServerCertInit::Kept)),
        (None, true) => "--force".to_owned(),
        (Some(why), _) if why == "missing" && !dir.join(SERVER_KEY).exists() => why,
        (Some(why), true) => why,
        (Some(why), false) => anyhow::bail!(
            "the server certificate in {} must be issued again ({why}), which replaces its key: rerun with --force",
            dir.display()
        ),
    };
    let pki = Pki::load_or_create(dir)?;
    let issuer = Issuer::from_ca_cert_pem(&pki.ca_pem, &*pki.ca_key).context("loading the CA")?;
    let (cert, key) = issue_server_with(&issuer, &names)?;
    write_file(&pki.server_key_path(), key.as_bytes(), 0o600)?;
    write_file(&pki.server_cert_path(), cert.as_bytes(), 0o644)?;
    Ok((pki, ServerCertInit::Reissued(why)))
}

/// `localhost`, `127.0.0.1` and the caller's names, without blanks or duplicates.
fn server_names(hosts: &[String]) -> Vec<String> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into()];
    for h in hosts.iter().map(|h| h.trim()).filter(|h| !h.is_empty()) {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(h)) {
            names.push(h.to_owned());
        }
    }
    names
}

/// Why the server certificate must be issued again, if it must. Names the current certificate
/// has beyond `names` are added to `names`, so processes configured with different host lists
/// widen the certificate instead of replacing each other's.
fn server_cert_problem(pem: &str, names: &mut Vec<String>) -> Option<String> {
    use x509_parser::extensions::GeneralName;

    let parsed = x509_parser::pem::parse_x509_pem(pem.as_bytes());
    let Ok((_, pem)) = parsed else {
        return Some("unreadable PEM".into());
    };
    let Ok(cert) = pem.parse_x509() else {
        return Some("unreadable certificate".into());
    };
    let mut present = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for g in &ext.value.general_names {
            match g {
                GeneralName::DNSName(d) => present.push(d.to_string()),
                GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        present.push(std::net::Ipv4Addr::from(a).to_string());
                    } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                        present.push(std::net::Ipv6Addr::from(a).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let same = |a: &str, b: &str| match (a.parse::<std::net::IpAddr>(), b.parse::<std::net::IpAddr>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a.eq_ignore_ascii_case(b),
    };
    let missing = names.iter().find(|n| !present.iter().any(|p| same(p, n))).cloned();
    for p in present {
        if !names.iter().any(|n| same(n, &p)) {
            names.push(p);
        }
    }
    if let Some(name) = missing {
        return Some(format!("{name} missing"));
    }
    if cert.validity().not_after.timestamp() < Utc::now().timestamp() + RENEW_BEFORE_SECS {
        return Some("expires soon".into());
    }
    None
}

/// First use: CA and server certificate written into a temporary sibling, then renamed to `dir`.
fn create_fresh(dir: &Path, names: &[String]) -> Result<()> {
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let name = dir.file_name().context("PKI directory has no name")?.to_string_lossy().into_owned();
    let tmp = parent.join(format!(".{name}.tmp-{}-{:08x}", std::process::id(), rand::random::<u32>()));
    let result = (|| -> Result<()> {
        fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
        let ca_key = KeyPair::generate().context("generating the CA key")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, CA_CN);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
        let now = Utc::now().timestamp();
        params.not_before = to_time(now - BACKDATE_SECS)?;
        params.not_after = to_time(now + CA_DAYS * 86_400)?;
        let ca_cert = params.self_signed(&ca_key).context("self-signing the CA")?;
        write_file(&tmp.join(CA_KEY), ca_key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&tmp.join(CA_CERT), ca_cert.pem().as_bytes(), 0o644)?;
        let issuer = Issuer::new(params, &ca_key);
        let (cert, key) = issue_server_with(&issuer, names)?;
        write_file(&tmp.join(SERVER_KEY), key.as_bytes(), 0o600)?;
        write_file(&tmp.join(SERVER_CERT), cert.as_bytes(), 0o644)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // rename(2) replaces an empty directory but not a populated one: whoever renames first wins.
    match fs::rename(&tmp, dir) {
        Ok(()) => {
            info!(dir = %dir.display(), "created the device CA");
            Ok(())
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            if dir.join(CA_CERT).exists() {
                Ok(())
            } else {
                Err(e).with_context(|| {
                    format!("moving the new CA into {} (is it a non-empty directory without {CA_CERT}?)", dir.display())
                })
            }
        }
    }
}

fn issue_server_with(issuer: &Issuer<'_, impl rcgen::SigningKey>, names: &[String]) -> Result<(String, String)> {
    let key = KeyPair::generate().context("generating the broker key")?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    // One certificate for the broker's TLS listener and the portal's HTTPS.
    dn.push(DnType::CommonName, "offsite server");
    params.distinguished_name = dn;
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(n.as_str().try_into().with_context(|| format!("bad host name {n:?}"))?)),
        })
        .collect::<Result<_>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
    let now = Utc::now().timestamp();
    params.not_before = to_time(now - BACKDATE_SECS)?;
    params.not_after = to_time(now + SERVER_DAYS * 86_400)?;
    let cert = params.signed_by(&key, issuer).context("signing the broker certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// 16 random bytes, first byte in 0x40..=0x7f: a positive DER integer of fixed length.
fn random_serial() -> Vec<u8> {
    let mut serial: [u8; 16] = rand::random();
    serial[0] = (serial[0] & 0x3f) | 0x40;
    serial.to_vec()
}

fn to_time(unix: i64) -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(unix).context("date out of range")
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Writes a file atomically (temporary name, then rename) with the given mode from the start,
/// so a private key is never readable by others, not even briefly.
pub(crate) fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let name = path.file_name().context("file has no name")?.to_string_lossy().into_owned();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}-{:08x}", std::process::id(), rand::random::<u32>()));
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write()
        .inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
        .with_context(|| format!("writing {}", path.display()))
}

/// A fresh device token: 32 random bytes, hex (64 characters). Used as the MQTT password.
pub fn new_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// What the registry stores instead of the token.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_in(dir: &Path, hosts: &[&str]) -> bool {
        let mut names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        server_cert_problem(&read(&dir.join(SERVER_CERT)).unwrap(), &mut names).is_none()
    }

    #[test]
    fn init_is_idempotent_and_replaces_a_key_only_when_forced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        let hosts = vec!["portal.example.test".to_owned()];
        assert_eq!(init(&dir, &hosts, false).unwrap().1, ServerCertInit::CreatedCa);
        assert!(names_in(&dir, &["localhost", "127.0.0.1", "portal.example.test"]));
        let key = fs::read(dir.join(SERVER_KEY)).unwrap();
        assert_eq!(init(&dir, &hosts, false).unwrap().1, ServerCertInit::Kept);
        assert_eq!(fs::read(dir.join(SERVER_KEY)).unwrap(), key);

        let more = vec!["10.0.0.5".to_owned()];
        let refused = init(&dir, &more, false).unwrap_err();
        assert!(format!("{refused:#}").contains("--force"), "{refused:#}");
        assert_eq!(fs::read(dir.join(SERVER_KEY)).unwrap(), key);
        let ca = fs::read(dir.join(CA_KEY)).unwrap();
        assert!(matches!(init(&dir, &more, true).unwrap().1, ServerCertInit::Reissued(_)));
        assert_ne!(fs::read(dir.join(SERVER_KEY)).unwrap(), key);
        assert_eq!(fs::read(dir.join(CA_KEY)).unwrap(), ca, "the CA is never replaced");
        assert!(names_in(&dir, &["portal.example.test", "10.0.0.5"]), "names are widened, not replaced");
    }

    #[test]
    fn init_never_overwrites_a_stray_server_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(SERVER_KEY), b"someone's key").unwrap();
        assert!(init(&dir, &[], false).is_err());
        assert_eq!(fs::read(dir.join(SERVER_KEY)).unwrap(), b"someone's key");
    }
}
