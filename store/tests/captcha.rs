//! CAPTCHA challenges in the database: taken once, by whichever process asks first; expired ones
//! are pruned as new ones are issued.

use anyhow::Result;
use chrono::{Duration, Utc};
use offsite_store::testing::TestDb;

#[tokio::test]
async fn a_challenge_is_taken_once_and_expired_ones_are_pruned() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let id = "0123456789abcdef0123456789abcdef";
    let digest = [7u8; 32];
    s.put_captcha(id, &digest, Utc::now() + Duration::minutes(5)).await?;
    assert!(s.put_captcha(id, &digest, Utc::now()).await.is_err(), "ids are unique");
    assert!(
        s.put_captcha("not-hex", &digest, Utc::now()).await.is_err(),
        "ids are 32 hex characters"
    );
    // Two connections race for it: exactly one wins.
    let other = offsite_store::Store::connect(db.options.clone(), 2).await?;
    let (a, b) = tokio::join!(s.take_captcha(id), other.take_captcha(id));
    let (a, b) = (a?, b?);
    assert!(a.is_some() ^ b.is_some(), "taken once: {a:?} {b:?}");
    assert_eq!(a.or(b).unwrap().answer_sha256, digest.to_vec());
    assert_eq!(s.take_captcha(id).await?, None);

    for i in 0..3 {
        s.put_captcha(&format!("{i:032x}"), &digest, Utc::now() - Duration::seconds(1))
            .await?;
    }
    let live = "ffffffffffffffffffffffffffffffff";
    s.put_captcha(live, &digest, Utc::now() + Duration::minutes(5)).await?;
    assert_eq!(s.stored_captchas().await?, 1, "issuing pruned the three expired ones");
    assert!(s.expire_captcha(live).await?);
    assert_eq!(s.prune_captchas(Utc::now() + Duration::seconds(1)).await?, 1);
    assert_eq!(s.take_captcha(live).await?, None);
    Ok(())
}
