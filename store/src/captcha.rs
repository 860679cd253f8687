//! Pending CAPTCHAs of the public complaint form, in the database so that any portal replica can
//! check the answer to a CAPTCHA another replica drew. Only a digest of the answer is stored (the
//! portal computes it); a challenge is used up by the first check, right or wrong.

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::Store;

/// Expired challenges deleted per issued one: pruning keeps pace with issuing without ever making
/// one request slow.
const PRUNE_BATCH: i64 = 100;

/// A challenge taken (and so used up) for checking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptchaChallenge {
    pub answer_sha256: Vec<u8>,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Records a new challenge, after pruning some expired ones.
    pub async fn put_captcha(&self, id: &str, answer_sha256: &[u8; 32], expires_at: DateTime<Utc>) -> Result<()> {
        self.prune_captchas(Utc::now()).await?;
        sqlx::query("INSERT INTO captcha_challenges (id, answer_sha256, expires_at) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(&answer_sha256[..])
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Takes a challenge out: whoever calls this first for an id gets it, every later call `None`.
    /// An expired challenge is returned too (with its expiry), so the caller can say why.
    pub async fn take_captcha(&self, id: &str) -> Result<Option<CaptchaChallenge>> {
        let row: Option<(Vec<u8>, DateTime<Utc>)> =
            sqlx::query_as("DELETE FROM captcha_challenges WHERE id = $1 RETURNING answer_sha256, expires_at")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(answer_sha256, expires_at)| CaptchaChallenge {
            answer_sha256,
            expires_at,
        }))
    }

    /// Makes a pending challenge expire now (tests: as if its minutes had passed).
    pub async fn expire_captcha(&self, id: &str) -> Result<bool> {
        let r = sqlx::query("UPDATE captcha_challenges SET expires_at = now() WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Deletes up to [`PRUNE_BATCH`] challenges expired at `now`; returns how many.
    pub async fn prune_captchas(&self, now: DateTime<Utc>) -> Result<u64> {
        let r = sqlx::query(
            "DELETE FROM captcha_challenges WHERE id IN \
             (SELECT id FROM captcha_challenges WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2)",
        )
        .bind(now)
        .bind(PRUNE_BATCH)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Challenges stored (pending or expired but not yet pruned).
    pub async fn stored_captchas(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM captcha_challenges")
            .fetch_one(&self.pool)
            .await?)
    }
}
