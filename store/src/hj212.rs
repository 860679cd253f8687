//! HJ 212-2017 data loggers in the device registry: found by MN, authenticated by PW.

use anyhow::{Context, Result};
use offsite_wire::DeviceId;
use sha2::{Digest, Sha256};

use crate::{DeviceRecord, Store};

/// What the gateway needs to accept a logger's connection.
#[derive(Debug, Clone)]
pub struct Hj212Logger {
    pub key: i32,
    pub id: DeviceId,
    pub mn: String,
    pw_sha256: Vec<u8>,
    pub revoked: bool,
}

impl Hj212Logger {
    /// Compares the digest of `pw` with the stored one without an early exit, so the time taken
    /// does not tell how many leading bytes matched.
    pub fn password_matches(&self, pw: &str) -> bool {
        let digest = pw_digest(pw);
        if self.pw_sha256.len() != digest.len() {
            return false;
        }
        let diff = digest
            .iter()
            .zip(&self.pw_sha256)
            .fold(0u8, |acc, (x, y)| acc | (x ^ y));
        std::hint::black_box(diff) == 0
    }
}

/// The device class loggers are registered with.
pub const LOGGER_CLASS: &str = "hj212";

/// What the registry stores instead of a logger's PW.
pub fn pw_digest(pw: &str) -> [u8; 32] {
    Sha256::digest(pw.as_bytes()).into()
}

/// Whether `mn` is an MN we register: 1..=64 of `[A-Za-z0-9_-]` (real loggers send other lengths than 24).
pub fn valid_mn(mn: &str) -> bool {
    !mn.is_empty()
        && mn.len() <= 64
        && mn
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The device id of a logger: its MN when that is already a valid device id (1..=32 letters and
/// digits, e.g. the standard's 24 hex characters), so operators recognise it; otherwise `hj` and the
/// first 30 hex digits of SHA-256(MN), which is stable and does not collide in practice.
pub fn device_id_for_mn(mn: &str) -> DeviceId {
    DeviceId::parse(mn).unwrap_or_else(|_| {
        let h = hex_lower(&Sha256::digest(mn.as_bytes()));
        DeviceId::parse(&format!("hj{}", &h[..30])).expect("hj + hex is a valid device id")
    })
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Store {
    /// Registers a logger as a device. It gets no MQTT token anyone knows (a random digest): it
    /// talks only HJ 212. Fails if the MN or the derived id is taken. Its device class is
    /// [`LOGGER_CLASS`], so class rules (the default data-gap rule) cover it; callers may change it.
    pub async fn insert_hj212_logger(
        &self,
        name: &str,
        object_id: Option<String>,
        mn: &str,
        pw: &str,
    ) -> Result<DeviceRecord> {
        anyhow::ensure!(
            valid_mn(mn),
            "MN must be 1-64 characters of A-Z a-z 0-9 _ -"
        );
        anyhow::ensure!(
            !pw.is_empty() && pw.len() <= 64 && pw.is_ascii(),
            "PW must be 1-64 ASCII characters"
        );
        let id = device_id_for_mn(mn);
        let unknowable: [u8; 32] = Sha256::digest(rand::random::<[u8; 32]>()).into();
        let mut tx = self.pool.begin().await?;
        let key: i32 = sqlx::query_scalar(
            "INSERT INTO devices (id, name, object_id, token_sha256, hj212_mn, hj212_pw_sha256, class) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING key",
        )
        .bind(id.as_str())
        .bind(name)
        .bind(&object_id)
        .bind(&unknowable[..])
        .bind(mn)
        .bind(&pw_digest(pw)[..])
        .bind(LOGGER_CLASS)
        .fetch_one(&mut *tx)
        .await
        .with_context(|| {
            format!("registering logger MN {mn} as device {id} (MN or id already registered?)")
        })?;
        sqlx::query("INSERT INTO device_status (device_key) VALUES ($1)")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(self.device(&id).await?.expect("just inserted"))
    }

    /// The MN of a device that is an HJ 212 logger; `None` for other devices.
    pub async fn hj212_mn_of(&self, device_key: i32) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT hj212_mn FROM devices WHERE key = $1")
                .bind(device_key)
                .fetch_optional(&self.pool)
                .await?
                .flatten(),
        )
    }

    /// The logger registered with this MN, revoked or not; `None` if unknown.
    pub async fn hj212_logger(&self, mn: &str) -> Result<Option<Hj212Logger>> {
        let row: Option<(i32, String, String, Vec<u8>, bool)> = sqlx::query_as(
            "SELECT key, id, hj212_mn, hj212_pw_sha256, revoked_at IS NOT NULL FROM devices WHERE hj212_mn = $1",
        )
        .bind(mn)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(key, id, mn, pw_sha256, revoked)| {
            Ok(Hj212Logger {
                key,
                id: DeviceId::parse(&id)?,
                mn,
                pw_sha256,
                revoked,
            })
        })
        .transpose()
    }
}

impl Store {
    /// Unanswered HJ 212 commands (`sync_clock`, `set_interval`) younger than `max_age` for any of
    /// these devices, oldest first: (command id, device key, body as sent).
    pub async fn pending_hj212_commands(
        &self,
        device_keys: &[i32],
        max_age: chrono::Duration,
    ) -> Result<Vec<(String, i32, serde_json::Value)>> {
        Ok(sqlx::query_as(
            "SELECT id, device_key, body FROM device_commands WHERE device_key = ANY($1) AND acked_at IS NULL \
             AND kind IN ('sync_clock', 'set_interval') AND created_at > now() - $2 ORDER BY created_at",
        )
        .bind(device_keys)
        .bind(max_age)
        .fetch_all(&self.pool)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_mns() {
        assert_eq!(
            device_id_for_mn("SQ0000000000000000000001").as_str(),
            "SQ0000000000000000000001"
        );
        let long = device_id_for_mn("010000A8900016F000169DC0-extra_part");
        assert!(long.as_str().starts_with("hj") && long.as_str().len() == 32);
        assert_eq!(
            long,
            device_id_for_mn("010000A8900016F000169DC0-extra_part")
        );
        assert_ne!(
            long,
            device_id_for_mn("010000A8900016F000169DC0-extra_parT")
        );
    }

    #[test]
    fn password_comparison() {
        let l = Hj212Logger {
            key: 1,
            id: DeviceId::parse("a").unwrap(),
            mn: "a".into(),
            pw_sha256: pw_digest("123456").to_vec(),
            revoked: false,
        };
        assert!(l.password_matches("123456"));
        assert!(!l.password_matches("123457"));
        assert!(!l.password_matches(""));
    }
}
