//! An offline image CAPTCHA for the public complaint form.
//!
//! Five characters from an alphabet without look-alikes are drawn as SVG strokes from a built-in
//! stroke font (no web fonts, nothing fetched from anywhere), each glyph jittered, scaled and
//! rotated on its own, over noise curves and dots. The answer stays on the server, five minutes,
//! one use (a wrong answer uses it up too).
//!
//! Answers live in PostgreSQL (`captcha_challenges`, as a digest), not in the process: any portal
//! replica checks a CAPTCHA any other replica drew, with no sticky sessions, and the first check
//! takes the challenge out in one statement, so two replicas can never both accept it.
//!
//! [`CaptchaStore::answer`] reads an answer back only where [`CaptchaStore::keep_answers`] was
//! called (tests, which solve the CAPTCHA through it); no route calls it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use offsite_store::Store;
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};

/// How long an answer is accepted.
pub const TTL: Duration = Duration::from_secs(5 * 60);
/// Characters per CAPTCHA.
pub const LENGTH: usize = 5;
/// No 0/O/D/Q, 1/I, 2/Z, 5/S, 8/B, 6/G.
pub const ALPHABET: &str = "ACEFHJKLMNPRTUVWXY34679";

const WIDTH: f64 = 170.0;
const HEIGHT: f64 = 60.0;

/// A freshly issued CAPTCHA.
#[derive(Debug, Clone)]
pub struct Captcha {
    pub id: String,
    /// `data:image/svg+xml;base64,...`
    pub image: String,
}

/// Outcome of checking an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Ok,
    Wrong,
    /// Never issued, expired or already used.
    Unknown,
}

/// The digest stored for an answer: SHA-256 over the challenge id and the answer (upper case,
/// trimmed), so equal answers of different challenges differ. It keeps answers out of plain
/// sight; it is no secret against someone who can read the table (5 characters of 23 are quickly
/// tried), who could file complaints directly anyway.
pub fn answer_digest(id: &str, answer: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"offsite-captcha-v1\n");
    h.update(id.as_bytes());
    h.update(b"\n");
    h.update(answer.trim().to_ascii_uppercase().as_bytes());
    h.finalize().into()
}

/// Issues and checks CAPTCHAs against the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct CaptchaStore {
    store: Store,
    /// Answers this process drew, kept only after [`CaptchaStore::keep_answers`] (tests).
    revealed: Option<Arc<Mutex<HashMap<String, String>>>>,
}

impl CaptchaStore {
    pub fn new(store: Store) -> Self {
        Self { store, revealed: None }
    }

    /// Also remembers the answers this process draws, for [`CaptchaStore::answer`]. For tests.
    pub fn keep_answers(mut self) -> Self {
        self.revealed = Some(Arc::default());
        self
    }

    /// Draws a new CAPTCHA and records its answer's digest.
    pub async fn issue(&self) -> anyhow::Result<Captcha> {
        let answer = random_answer();
        let svg = render(&answer);
        let mut b = [0u8; 16];
        rand::rng().fill_bytes(&mut b);
        let id = hex::encode(b);
        let expires = chrono::Utc::now() + chrono::Duration::from_std(TTL).expect("a short TTL");
        self.store.put_captcha(&id, &answer_digest(&id, &answer), expires).await?;
        if let Some(r) = &self.revealed {
            r.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), answer);
        }
        Ok(Captcha {
            id,
            image: format!("data:image/svg+xml;base64,{}", base64::engine::general_purpose::STANDARD.encode(svg)),
        })
    }

    /// Checks an answer (case and surrounding spaces ignored) and uses the CAPTCHA up, right or wrong.
    pub async fn check(&self, id: &str, answer: &str) -> anyhow::Result<Check> {
        let id = id.trim();
        // Not one of ours: no need to ask the database.
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Ok(Check::Unknown);
        }
        if let Some(r) = &self.revealed {
            r.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        }
        Ok(match self.store.take_captcha(id).await? {
            None => Check::Unknown,
            Some(c) if c.expires_at <= chrono::Utc::now() => Check::Unknown,
            Some(c) if c.answer_sha256 == answer_digest(id, answer) => Check::Ok,
            Some(_) => Check::Wrong,
        })
    }

    /// The answer of a CAPTCHA this process drew, if [`CaptchaStore::keep_answers`] was called
    /// and it was not checked yet. Not reachable over HTTP; for Rust callers such as tests.
    pub fn answer(&self, id: &str) -> Option<String> {
        self.revealed.as_ref()?.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    /// Makes a pending CAPTCHA expire now (as if its five minutes had passed).
    pub async fn expire(&self, id: &str) -> anyhow::Result<()> {
        self.store.expire_captcha(id).await?;
        Ok(())
    }
}

fn random_answer() -> String {
    let a = ALPHABET.as_bytes();
    let mut rng = rand::rng();
    (0..LENGTH).map(|_| a[rng.random_range(0..a.len())] as char).collect()
}

/// Stroke glyphs on a 10 x 14 grid (y down): polylines.
fn glyph(c: char) -> &'static [&'static [(f64, f64)]] {
    match c {
        'A' => &[&[(0.0, 14.0), (5.0, 0.0), (10.0, 14.0)], &[(2.2, 8.5), (7.8, 8.5)]],
        'C' => {
            &[&[(10.0, 2.0), (8.0, 0.2), (3.0, 0.2), (0.4, 3.0), (0.4, 11.0), (3.0, 13.8), (8.0, 13.8), (10.0, 12.0)]]
        }
        'E' => &[&[(10.0, 0.0), (0.0, 0.0), (0.0, 14.0), (10.0, 14.0)], &[(0.0, 7.0), (7.0, 7.0)]],
        'F' => &[&[(10.0, 0.0), (0.0, 0.0), (0.0, 14.0)], &[(0.0, 7.0), (7.0, 7.0)]],
        'H' => &[&[(0.0, 0.0), (0.0, 14.0)], &[(10.0, 0.0), (10.0, 14.0)], &[(0.0, 7.0), (10.0, 7.0)]],
        'J' => &[&[(3.0, 0.0), (10.0, 0.0)], &[(7.5, 0.0), (7.5, 11.0), (5.0, 14.0), (2.0, 14.0), (0.0, 11.0)]],
        'K' => &[&[(0.0, 0.0), (0.0, 14.0)], &[(10.0, 0.0), (0.0, 8.5)], &[(3.2, 5.8), (10.0, 14.0)]],
        'L' => &[&[(0.0, 0.0), (0.0, 14.0), (10.0, 14.0)]],
        'M' => &[&[(0.0, 14.0), (0.0, 0.0), (5.0, 8.0), (10.0, 0.0), (10.0, 14.0)]],
        'N' => &[&[(0.0, 14.0), (0.0, 0.0), (10.0, 14.0), (10.0, 0.0)]],
        'P' => &[&[(0.0, 14.0), (0.0, 0.0), (7.0, 0.0), (10.0, 2.0), (10.0, 5.0), (7.0, 7.0), (0.0, 7.0)]],
        'R' => &[
            &[(0.0, 14.0), (0.0, 0.0), (7.0, 0.0), (10.0, 2.0), (10.0, 5.0), (7.0, 7.0), (0.0, 7.0)],
            &[(5.0, 7.0), (10.0, 14.0)],
        ],
        'T' => &[&[(0.0, 0.0), (10.0, 0.0)], &[(5.0, 0.0), (5.0, 14.0)]],
        'U' => &[&[(0.0, 0.0), (0.0, 11.0), (3.0, 14.0), (7.0, 14.0), (10.0, 11.0), (10.0, 0.0)]],
        'V' => &[&[(0.0, 0.0), (5.0, 14.0), (10.0, 0.0)]],
        'W' => &[&[(0.0, 0.0), (2.5, 14.0), (5.0, 5.0), (7.5, 14.0), (10.0, 0.0)]],
        'X' => &[&[(0.0, 0.0), (10.0, 14.0)], &[(10.0, 0.0), (0.0, 14.0)]],
        'Y' => &[&[(0.0, 0.0), (5.0, 7.0), (10.0, 0.0)], &[(5.0, 7.0), (5.0, 14.0)]],
        '3' => &[
            &[(0.0, 1.5), (3.0, 0.0), (8.0, 0.0), (10.0, 2.0), (10.0, 5.0), (7.0, 7.0), (3.0, 7.0)],
            &[(7.0, 7.0), (10.0, 9.0), (10.0, 12.0), (8.0, 14.0), (3.0, 14.0), (0.0, 12.5)],
        ],
        '4' => &[&[(7.0, 14.0), (7.0, 0.0), (0.0, 10.0), (10.0, 10.0)]],
        '6' => &[&[
            (9.0, 1.0),
            (6.0, 0.0),
            (3.0, 0.0),
            (0.0, 4.0),
            (0.0, 11.0),
            (3.0, 14.0),
            (7.0, 14.0),
            (10.0, 11.0),
            (10.0, 9.0),
            (7.0, 7.0),
            (3.0, 7.0),
            (0.0, 9.0),
        ]],
        '7' => &[&[(0.0, 0.0), (10.0, 0.0), (4.0, 14.0)]],
        '9' => &[&[
            (10.0, 5.0),
            (7.0, 7.0),
            (3.0, 7.0),
            (0.0, 5.0),
            (0.0, 3.0),
            (3.0, 0.0),
            (7.0, 0.0),
            (10.0, 3.0),
            (10.0, 10.0),
            (7.0, 14.0),
            (4.0, 14.0),
            (1.0, 13.0),
        ]],
        _ => &[],
    }
}

fn color(rng: &mut impl Rng, lo: u8, hi: u8) -> String {
    format!("rgb({},{},{})", rng.random_range(lo..hi), rng.random_range(lo..hi), rng.random_range(lo..hi))
}

/// The SVG image of `text`.
pub fn render(text: &str) -> String {
    let mut rng = rand::rng();
    let mut svg = String::with_capacity(4096);
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">"#
    );
    let _ = write!(svg, r#"<rect width="100%" height="100%" fill="{}"/>"#, color(&mut rng, 225, 255));
    // Noise behind the text.
    for _ in 0..8 {
        let _ = write!(
            svg,
            r#"<circle cx="{:.1}" cy="{:.1}" r="{:.1}" fill="{}" fill-opacity="0.5"/>"#,
            rng.random_range(0.0..WIDTH),
            rng.random_range(0.0..HEIGHT),
            rng.random_range(1.0..4.0),
            color(&mut rng, 120, 220)
        );
    }
    let n = text.chars().count().max(1) as f64;
    let slot = (WIDTH - 20.0) / n;
    for (i, c) in text.chars().enumerate() {
        let scale = rng.random_range(2.3..2.9);
        let (w, h) = (10.0 * scale, 14.0 * scale);
        let x = 10.0 + i as f64 * slot + (slot - w) / 2.0 + rng.random_range(-3.0..3.0);
        let y = (HEIGHT - h) / 2.0 + rng.random_range(-4.0..4.0);
        let angle = rng.random_range(-25.0..25.0);
        let skew = rng.random_range(-12.0..12.0);
        let _ = write!(
            svg,
            r#"<g transform="translate({x:.1} {y:.1}) rotate({angle:.1} {:.1} {:.1}) skewX({skew:.1}) scale({scale:.2})" fill="none" stroke="{}" stroke-width="{:.2}" stroke-linecap="round" stroke-linejoin="round">"#,
            w / 2.0 / scale,
            h / 2.0 / scale,
            color(&mut rng, 10, 110),
            rng.random_range(1.0..1.5)
        );
        for stroke in glyph(c) {
            svg.push_str("<path d=\"");
            for (k, (px, py)) in stroke.iter().enumerate() {
                let (jx, jy) = (rng.random_range(-0.5..0.5), rng.random_range(-0.5..0.5));
                let _ = write!(svg, "{}{:.2} {:.2} ", if k == 0 { 'M' } else { 'L' }, px + jx, py + jy);
            }
            svg.push_str("\"/>");
        }
        svg.push_str("</g>");
    }
    // Curves across the text.
    for _ in 0..5 {
        let _ = write!(
            svg,
            r#"<path d="M{:.1} {:.1} C{:.1} {:.1} {:.1} {:.1} {:.1} {:.1}" fill="none" stroke="{}" stroke-width="{:.1}"/>"#,
            rng.random_range(0.0..20.0),
            rng.random_range(0.0..HEIGHT),
            rng.random_range(30.0..80.0),
            rng.random_range(-20.0..HEIGHT + 20.0),
            rng.random_range(90.0..140.0),
            rng.random_range(-20.0..HEIGHT + 20.0),
            rng.random_range(150.0..WIDTH),
            rng.random_range(0.0..HEIGHT),
            color(&mut rng, 40, 160),
            rng.random_range(1.0..2.2)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_character_has_a_glyph() {
        for c in ALPHABET.chars() {
            assert!(!glyph(c).is_empty(), "{c}");
        }
    }

    #[test]
    fn digests_bind_the_answer_to_its_challenge() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(answer_digest(id, " ace34 "), answer_digest(id, "ACE34"));
        assert_ne!(answer_digest(id, "ACE34"), answer_digest(id, "ACE35"));
        assert_ne!(answer_digest(id, "ACE34"), answer_digest("ffffffffffffffffffffffffffffffff", "ACE34"));
    }

    #[test]
    fn svg_has_no_text_or_external_references() {
        let svg = render("ACE34");
        assert!(!svg.contains("<text") && !svg.contains("href") && !svg.contains("font"));
        assert!(!svg.contains("ACE34"));
    }
}
