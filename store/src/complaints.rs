//! Complaints (投诉举报) from the public: intake with attachments, a tracking number, status notes
//! (public or internal), closing by the monitoring center, and per-address rate limits for the
//! public endpoints.
//!
//! The fields map onto Open311 GeoReport v2: `service_code`, `description`, `lat`/`lon`,
//! `address` (`address_string`), `status` (`open`/`closed`) and the status notes.
//!
//! Contact details: the store never sees a phone or ID number in clear. The portal validates them
//! with [`normalize_phone`] and [`normalize_id_number`], encrypts them (the key lives with the
//! portal) and hands over the ciphertext with the masked display form ([`mask_phone`],
//! [`mask_id_number`]). [`ComplaintRecord`] deliberately has no `Serialize`: views are built field
//! by field, so nothing private reaches a response by accident.

use anyhow::Result;
use chrono::{DateTime, Datelike, FixedOffset, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder};

use crate::registers::{point, text, AccessScope, FieldError};
use crate::Store;

/// A kind of complaint (an Open311 service).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Service {
    pub service_code: &'static str,
    pub service_name: &'static str,
    pub service_name_zh: &'static str,
    /// Open311 `group`.
    pub group: &'static str,
    pub description: &'static str,
}

/// The services the public can file complaints about.
pub const SERVICES: [Service; 7] = [
    Service {
        service_code: "dust",
        service_name: "Dust",
        service_name_zh: "扬尘污染",
        group: "environment",
        description: "Dust from construction sites, roads, yards",
    },
    Service {
        service_code: "noise",
        service_name: "Noise",
        service_name_zh: "噪声扰民",
        group: "environment",
        description: "Construction or industrial noise, especially at night",
    },
    Service {
        service_code: "air-pollution",
        service_name: "Air pollution",
        service_name_zh: "废气排放",
        group: "environment",
        description: "Smoke, odour or emissions from a plant or a kitchen",
    },
    Service {
        service_code: "water-pollution",
        service_name: "Water pollution",
        service_name_zh: "水污染",
        group: "environment",
        description: "Discharge of wastewater, polluted rivers",
    },
    Service {
        service_code: "food-safety",
        service_name: "Food safety",
        service_name_zh: "食品安全",
        group: "market",
        description: "Unsafe food, kitchens, cold chain",
    },
    Service {
        service_code: "service-hall",
        service_name: "Government service hall",
        service_name_zh: "政务服务",
        group: "government",
        description: "Unattended windows, long queues, conduct of staff",
    },
    Service {
        service_code: "other",
        service_name: "Other",
        service_name_zh: "其他",
        group: "other",
        description: "Anything else within the platform's remit",
    },
];

/// The service with this code.
pub fn service(code: &str) -> Option<&'static Service> {
    SERVICES.iter().find(|s| s.service_code == code)
}

/// Open or closed (Open311's two states; the task workflow maps its detailed states onto these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComplaintStatus {
    Open,
    Closed,
}

impl ComplaintStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ComplaintStatus::Open => "open",
            ComplaintStatus::Closed => "closed",
        }
    }

    pub fn name_zh(self) -> &'static str {
        match self {
            ComplaintStatus::Open => "处理中",
            ComplaintStatus::Closed => "已办结",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(ComplaintStatus::Open),
            "closed" => Some(ComplaintStatus::Closed),
            _ => None,
        }
    }
}

/// A note on a complaint's status. Only `public` notes are shown to the complainant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusNote {
    pub at: DateTime<Utc>,
    pub note: String,
    pub public: bool,
    /// Who wrote it (a username); never shown publicly.
    pub by: String,
}

/// A file sent with a complaint; the caller has checked its type by content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAttachment {
    pub filename: String,
    /// `image/jpeg`, `image/png` or `application/pdf`.
    pub content_type: String,
    pub data: Vec<u8>,
}

/// A complaint as filed, contact details already encrypted by the caller.
#[derive(Debug, Clone, Default)]
pub struct NewComplaint {
    pub service_code: String,
    pub description: String,
    pub address: Option<String>,
    pub lon: Option<f64>,
    pub lat: Option<f64>,
    pub object_id: Option<String>,
    pub contact_name: Option<String>,
    /// Ciphertext and display form of the phone number.
    pub phone: Option<(Vec<u8>, String)>,
    /// Ciphertext and display form of the ID number.
    pub id_number: Option<(Vec<u8>, String)>,
    pub submitter_ip: String,
    pub attachments: Vec<NewAttachment>,
}

/// A stored complaint. No `Serialize` on purpose: it holds the private fields.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ComplaintRecord {
    pub id: i64,
    pub tracking_no: String,
    pub service_code: String,
    pub description: String,
    pub address: Option<String>,
    pub lon: Option<f64>,
    pub lat: Option<f64>,
    pub object_id: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: StatusColumn,
    pub status_notes: Json<Vec<StatusNote>>,
    pub contact_name: Option<String>,
    pub phone_enc: Option<Vec<u8>>,
    pub phone_masked: Option<String>,
    pub id_number_enc: Option<Vec<u8>>,
    pub id_number_masked: Option<String>,
    pub submitter_ip: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub closed_by: Option<String>,
    pub close_reason: Option<String>,
    pub attachment_count: i64,
}

/// The `status` column, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusColumn(pub ComplaintStatus);

impl TryFrom<String> for StatusColumn {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        ComplaintStatus::parse(&s).map(StatusColumn).ok_or_else(|| format!("unknown complaint status {s:?}"))
    }
}

impl ComplaintRecord {
    pub fn status(&self) -> ComplaintStatus {
        self.status.0
    }

    pub fn notes(&self) -> &[StatusNote] {
        &self.status_notes.0
    }

    /// The notes the complainant may see.
    pub fn public_notes(&self) -> impl Iterator<Item = &StatusNote> {
        self.status_notes.0.iter().filter(|n| n.public)
    }
}

/// An attachment without its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AttachmentMeta {
    pub id: i64,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    /// Hex.
    pub sha256: String,
}

/// A page of complaints; unset fields do not filter.
#[derive(Debug, Clone)]
pub struct ComplaintFilter {
    pub status: Option<ComplaintStatus>,
    pub service_code: Option<String>,
    pub object_id: Option<String>,
    /// Clamped to 1..=1000.
    pub limit: i64,
    pub offset: i64,
}

impl Default for ComplaintFilter {
    fn default() -> Self {
        Self { status: None, service_code: None, object_id: None, limit: 100, offset: 0 }
    }
}

/// How many requests one client address may make in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub max: i64,
    pub window: std::time::Duration,
}

/// What filing a complaint did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filed {
    Ok {
        id: i64,
        tracking_no: String,
    },
    /// This address filed its quota of complaints in the window.
    Throttled {
        retry_after_s: i64,
    },
}

/// What closing a complaint did.
#[derive(Debug, Clone, PartialEq)]
pub enum Closed {
    Ok(Box<ComplaintRecord>),
    AlreadyClosed,
    NotFound,
}

pub const DESCRIPTION_MAX: usize = 2000;
pub const ADDRESS_MAX: usize = 500;
pub const CONTACT_NAME_MAX: usize = 50;
pub const NOTE_MAX: usize = 1000;

/// Unambiguous upper-case letters and digits (no 0/O, 1/I); tracking numbers use them.
const TRACKING_ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
/// Random characters in a tracking number: 50 bits.
const TRACKING_RANDOM: usize = 10;

/// A fresh tracking number: `TS`, today's date in China (UTC+8), 10 random characters.
pub fn new_tracking_no() -> String {
    let cn = FixedOffset::east_opt(8 * 3600).expect("UTC+8");
    let mut s = format!("TS{}", Utc::now().with_timezone(&cn).format("%Y%m%d"));
    let mut rng = rand::rng();
    for _ in 0..TRACKING_RANDOM {
        s.push(TRACKING_ALPHABET[rng.random_range(0..TRACKING_ALPHABET.len())] as char);
    }
    s
}

/// Upper-cases and trims a tracking number as typed; `None` if it cannot be one.
pub fn normalize_tracking_no(s: &str) -> Option<String> {
    let s = s.trim().to_ascii_uppercase();
    let ok = s.len() == 2 + 8 + TRACKING_RANDOM
        && s.starts_with("TS")
        && s[2..10].bytes().all(|b| b.is_ascii_digit())
        && s[10..].bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
    ok.then_some(s)
}

/// Checks a phone number: a mainland mobile (`1[3-9]` and 9 digits, `+86` allowed) or a landline
/// with its area code (`0571-88886666`, extension not allowed). Spaces and dashes are ignored;
/// answers the digits (a landline keeps one dash after the area code).
pub fn normalize_phone(raw: &str) -> Result<String, FieldError> {
    let bad = || {
        FieldError::new(
            "phone",
            "must be a mainland mobile number (11 digits starting 13-19) or a landline with its area code",
            "请填写 11 位手机号码，或带区号的固定电话",
        )
    };
    let compact: String = raw.chars().filter(|c| !matches!(c, ' ' | '-' | '(' | ')')).collect();
    let digits = compact.strip_prefix("+86").or_else(|| compact.strip_prefix("0086")).unwrap_or(&compact);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let d = digits.as_bytes();
    if d.len() == 11 && d[0] == b'1' && (b'3'..=b'9').contains(&d[1]) {
        return Ok(digits.to_owned());
    }
    // Landline: area code 0XX (010, 02X) or 0XXX, then a 7- or 8-digit number not starting with 0/1.
    if d.first() == Some(&b'0') {
        let area = landline_area_len(digits);
        let local = &digits[area..];
        if (7..=8).contains(&local.len()) && !local.starts_with('0') && !local.starts_with('1') {
            return Ok(format!("{}-{}", &digits[..area], local));
        }
    }
    Err(bad())
}

fn landline_area_len(digits: &str) -> usize {
    if digits.starts_with("010") || digits.starts_with("02") {
        3
    } else {
        4
    }
}

/// `13812345678` -> `138****5678`; `0571-88886666` -> `0571-****6666`.
pub fn mask_phone(normalized: &str) -> String {
    let n = normalized.chars().count();
    if let Some((area, local)) = normalized.split_once('-') {
        let keep = local.len().saturating_sub(4);
        return format!("{area}-{}{}", "*".repeat(keep), &local[keep..]);
    }
    if n < 8 {
        return "*".repeat(n);
    }
    format!("{}{}{}", &normalized[..3], "*".repeat(n - 7), &normalized[n - 4..])
}

/// Checks a resident ID number (GB 11643-1999): 17 digits, a valid date of birth, and the check
/// character (`0`-`9` or `X`). Answers it upper-cased.
pub fn normalize_id_number(raw: &str) -> Result<String, FieldError> {
    let s = raw.trim().to_ascii_uppercase();
    let b = s.as_bytes();
    let shape = b.len() == 18 && b[..17].iter().all(u8::is_ascii_digit) && (b[17].is_ascii_digit() || b[17] == b'X');
    if !shape {
        return Err(FieldError::new(
            "id_number",
            "must be 18 characters: 17 digits and a digit or X",
            "身份证号码应为 18 位（17 位数字加 1 位数字或 X）",
        ));
    }
    let birth = chrono::NaiveDate::parse_from_str(&s[6..14], "%Y%m%d").ok();
    if birth.is_none_or(|d| d.year() < 1900 || d > Utc::now().date_naive()) {
        return Err(FieldError::new("id_number", "impossible date of birth", "身份证号码中的出生日期无效"));
    }
    if id_check_char(&b[..17]) != b[17] {
        return Err(FieldError::new("id_number", "wrong check character", "身份证号码校验位错误"));
    }
    Ok(s)
}

/// The GB 11643 check character of 17 digits.
pub fn id_check_char(first17: &[u8]) -> u8 {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = first17.iter().zip(W).map(|(d, w)| u32::from(d - b'0') * w).sum();
    b"10X98765432"[(sum % 11) as usize]
}

/// `330102199001011234` -> `330102********1234`.
pub fn mask_id_number(normalized: &str) -> String {
    if normalized.len() != 18 {
        return "*".repeat(normalized.chars().count());
    }
    format!("{}********{}", &normalized[..6], &normalized[14..])
}

/// `张三丰` -> `张**`.
pub fn mask_name(name: &str) -> String {
    let mut chars = name.chars();
    match (chars.next(), chars.count()) {
        (None, _) => String::new(),
        (Some(_), 0) => "*".to_owned(),
        (Some(first), rest) => format!("{first}{}", "*".repeat(rest)),
    }
}

impl NewComplaint {
    /// Trims text, turns empty optional text into `None` and checks every field that needs no
    /// database; the first problem is reported.
    pub fn normalized(&self) -> Result<NewComplaint, FieldError> {
        let service_code = self.service_code.trim().to_owned();
        if service(&service_code).is_none() {
            let codes: Vec<&str> = SERVICES.iter().map(|s| s.service_code).collect();
            return Err(FieldError::new(
                "service_code",
                format!("unknown service '{service_code}'; one of {}", codes.join(", ")),
                format!("未知的投诉类别“{service_code}”"),
            ));
        }
        let description = text("description", Some(&self.description), true, DESCRIPTION_MAX)?.unwrap_or_default();
        let address = text("address", self.address.as_deref(), false, ADDRESS_MAX)?;
        let contact_name = text("contact_name", self.contact_name.as_deref(), false, CONTACT_NAME_MAX)?;
        let object_id = text("object_id", self.object_id.as_deref(), false, 64)?;
        point(self.lon, self.lat)?;
        for a in &self.attachments {
            if !matches!(a.content_type.as_str(), "image/jpeg" | "image/png" | "application/pdf") {
                return Err(FieldError::new("attachment", "must be JPEG, PNG or PDF", "附件只能是 JPEG、PNG 或 PDF"));
            }
        }
        Ok(NewComplaint { service_code, description, address, contact_name, object_id, ..self.clone() })
    }
}

const SELECT: &str =
    "SELECT c.id, c.tracking_no, c.service_code, c.description, c.address, c.lon, c.lat, c.object_id, \
     c.status, c.status_notes, c.contact_name, c.phone_enc, c.phone_masked, c.id_number_enc, c.id_number_masked, \
     c.submitter_ip, c.created_at, c.updated_at, c.closed_at, c.closed_by, c.close_reason, \
     (SELECT count(*) FROM complaint_attachments a WHERE a.complaint_id = c.id) AS attachment_count \
     FROM complaints c LEFT JOIN objects o ON o.id = c.object_id";

fn push_filters(b: &mut QueryBuilder<'_, Postgres>, f: &ComplaintFilter, scope: &AccessScope) {
    b.push(" WHERE ");
    scope.push_condition(b, "o.department_id", "o.region_code");
    if let Some(s) = f.status {
        b.push(" AND c.status = ").push_bind(s.as_str());
    }
    if let Some(s) = &f.service_code {
        b.push(" AND c.service_code = ").push_bind(s.clone());
    }
    if let Some(s) = &f.object_id {
        b.push(" AND c.object_id = ").push_bind(s.clone());
    }
}

fn retry_after(oldest: Option<DateTime<Utc>>, window: std::time::Duration) -> i64 {
    let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::minutes(10));
    let until = oldest.unwrap_or_else(Utc::now) + window;
    (until - Utc::now()).num_seconds().max(1)
}

fn window_start(window: std::time::Duration) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::minutes(10))
}

impl Store {
    /// Files a complaint unless `submitter_ip` already filed `limit.max` in `limit.window` (checked
    /// and inserted under a lock on the address, so concurrent requests and replicas agree).
    /// Validation failures are [`FieldError`]s.
    /// The attachments' bytes are kept in the row; [`Store::file_complaint_with`] puts them in a
    /// file store instead.
    pub async fn file_complaint(&self, c: &NewComplaint, limit: RateLimit) -> Result<Filed> {
        self.file_complaint_with(c, limit, None).await
    }

    /// [`Store::file_complaint`], with the attachments' bytes in `files` (when given) and only
    /// their digests in the rows. The bytes are stored before the transaction, so a committed row
    /// always finds them; a refusal after that leaves unreferenced bytes, never a dangling row.
    pub async fn file_complaint_with(
        &self,
        c: &NewComplaint,
        limit: RateLimit,
        files: Option<&dyn crate::files::FileStore>,
    ) -> Result<Filed> {
        let c = c.normalized()?;
        if let Some(obj) = &c.object_id {
            if self.object(obj).await?.is_none() {
                return Err(FieldError::new("object_id", "unknown object", "监管对象不存在").into());
            }
        }
        if let Some(files) = files {
            for a in &c.attachments {
                files.put(&a.data).await?;
            }
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('complaints:' || $1, 0))")
            .bind(&c.submitter_ip)
            .execute(&mut *tx)
            .await?;
        let (n, oldest): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
            "SELECT count(*), min(created_at) FROM complaints WHERE submitter_ip = $1 AND created_at > $2",
        )
        .bind(&c.submitter_ip)
        .bind(window_start(limit.window))
        .fetch_one(&mut *tx)
        .await?;
        if n >= limit.max {
            return Ok(Filed::Throttled { retry_after_s: retry_after(oldest, limit.window) });
        }
        let (phone_enc, phone_masked) = c.phone.clone().unzip();
        let (id_enc, id_masked) = c.id_number.clone().unzip();
        let mut inserted = None;
        for _ in 0..5 {
            let no = new_tracking_no();
            inserted = sqlx::query_scalar::<_, i64>(
                "INSERT INTO complaints (tracking_no, service_code, description, address, lon, lat, object_id, \
                 contact_name, phone_enc, phone_masked, id_number_enc, id_number_masked, submitter_ip) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 ON CONFLICT (tracking_no) DO NOTHING RETURNING id",
            )
            .bind(&no)
            .bind(&c.service_code)
            .bind(&c.description)
            .bind(&c.address)
            .bind(c.lon)
            .bind(c.lat)
            .bind(&c.object_id)
            .bind(&c.contact_name)
            .bind(&phone_enc)
            .bind(&phone_masked)
            .bind(&id_enc)
            .bind(&id_masked)
            .bind(&c.submitter_ip)
            .fetch_optional(&mut *tx)
            .await?
            .map(|id| (id, no));
            if inserted.is_some() {
                break;
            }
        }
        let Some((id, tracking_no)) = inserted else { anyhow::bail!("no free tracking number after 5 tries") };
        for a in &c.attachments {
            sqlx::query(
                "INSERT INTO complaint_attachments (complaint_id, filename, content_type, size, sha256, data) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(&a.filename)
            .bind(&a.content_type)
            .bind(a.data.len() as i64)
            .bind(Sha256::digest(&a.data).to_vec())
            .bind(files.is_none().then_some(&a.data))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Filed::Ok { id, tracking_no })
    }

    /// Seconds until `ip` may file another complaint, or `None` if it may now.
    pub async fn complaint_quota_exhausted(&self, ip: &str, limit: RateLimit) -> Result<Option<i64>> {
        let (n, oldest): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
            "SELECT count(*), min(created_at) FROM complaints WHERE submitter_ip = $1 AND created_at > $2",
        )
        .bind(ip)
        .bind(window_start(limit.window))
        .fetch_one(&self.pool)
        .await?;
        Ok((n >= limit.max).then(|| retry_after(oldest, limit.window)))
    }

    /// A complaint by id, whatever the scope.
    pub async fn complaint(&self, id: i64) -> Result<Option<ComplaintRecord>> {
        Ok(sqlx::query_as(&format!("{SELECT} WHERE c.id = $1")).bind(id).fetch_optional(&self.pool).await?)
    }

    /// A complaint if `scope` may see it: everything for `all`, otherwise only complaints about an
    /// object in the scope.
    pub async fn visible_complaint(&self, id: i64, scope: &AccessScope) -> Result<Option<ComplaintRecord>> {
        let mut b = QueryBuilder::new(SELECT);
        b.push(" WHERE c.id = ").push_bind(id).push(" AND ");
        scope.push_condition(&mut b, "o.department_id", "o.region_code");
        Ok(b.build_query_as().fetch_optional(&self.pool).await?)
    }

    /// A complaint by its tracking number (as typed: case and spaces do not matter).
    pub async fn complaint_by_tracking_no(&self, tracking_no: &str) -> Result<Option<ComplaintRecord>> {
        let Some(no) = normalize_tracking_no(tracking_no) else { return Ok(None) };
        Ok(sqlx::query_as(&format!("{SELECT} WHERE c.tracking_no = $1")).bind(no).fetch_optional(&self.pool).await?)
    }

    /// A page of the complaints `scope` may see that match `f`, newest first, with the total count.
    pub async fn list_complaints(
        &self,
        f: &ComplaintFilter,
        scope: &AccessScope,
    ) -> Result<(Vec<ComplaintRecord>, i64)> {
        let mut b = QueryBuilder::new(SELECT);
        push_filters(&mut b, f, scope);
        b.push(" ORDER BY c.id DESC LIMIT ")
            .push_bind(f.limit.clamp(1, 1000))
            .push(" OFFSET ")
            .push_bind(f.offset.max(0));
        let items = b.build_query_as().fetch_all(&self.pool).await?;
        let mut c = QueryBuilder::new("SELECT count(*) FROM complaints c LEFT JOIN objects o ON o.id = c.object_id");
        push_filters(&mut c, f, scope);
        let total: i64 = c.build_query_scalar().fetch_one(&self.pool).await?;
        Ok((items, total))
    }

    /// The attachments of a complaint, without their content.
    pub async fn complaint_attachments(&self, complaint_id: i64) -> Result<Vec<AttachmentMeta>> {
        Ok(sqlx::query_as(
            "SELECT id, filename, content_type, size, encode(sha256, 'hex') AS sha256 FROM complaint_attachments \
             WHERE complaint_id = $1 ORDER BY id",
        )
        .bind(complaint_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One attachment of a complaint with its content.
    /// An attachment and its bytes when the row holds them (`None`: they are in the file store
    /// under `sha256`).
    pub async fn complaint_attachment(&self, complaint_id: i64, id: i64) -> Result<Option<(AttachmentMeta, Option<Vec<u8>>)>> {
        let row: Option<(i64, String, String, i64, String, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT id, filename, content_type, size, encode(sha256, 'hex'), data FROM complaint_attachments \
             WHERE complaint_id = $1 AND id = $2",
        )
        .bind(complaint_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(id, filename, content_type, size, sha256, data)| {
            (AttachmentMeta { id, filename, content_type, size, sha256 }, data)
        }))
    }

    /// Closes an open complaint: `reason` is kept (and added as an internal note), `public_note`,
    /// if any, is added as a note the complainant sees.
    pub async fn close_complaint(&self, id: i64, by: &str, reason: &str, public_note: Option<&str>) -> Result<Closed> {
        let reason = text("reason", Some(reason), true, NOTE_MAX)?.unwrap_or_default();
        let public_note = text("public_note", public_note, false, NOTE_MAX)?;
        let now = Utc::now();
        let mut notes = vec![StatusNote { at: now, note: reason.clone(), public: false, by: by.to_owned() }];
        if let Some(p) = public_note {
            notes.push(StatusNote { at: now, note: p, public: true, by: by.to_owned() });
        }
        let updated = sqlx::query(
            "UPDATE complaints SET status = 'closed', closed_at = $2, closed_by = $3, close_reason = $4, \
             status_notes = status_notes || $5, updated_at = $2 WHERE id = $1 AND status = 'open'",
        )
        .bind(id)
        .bind(now)
        .bind(by)
        .bind(&reason)
        .bind(Json(&notes))
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 1 {
            return Ok(match self.complaint(id).await? {
                Some(c) => Closed::Ok(Box::new(c)),
                None => Closed::NotFound,
            });
        }
        Ok(if self.complaint(id).await?.is_some() { Closed::AlreadyClosed } else { Closed::NotFound })
    }

    /// Counts one request of `ip` against `bucket` unless it already made `limit.max` in
    /// `limit.window`; answers the seconds to wait when refused (refused requests are not counted).
    pub async fn rate_hit(&self, bucket: &str, ip: &str, limit: RateLimit) -> Result<Option<i64>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('rate:' || $1 || ':' || $2, 0))")
            .bind(bucket)
            .bind(ip)
            .execute(&mut *tx)
            .await?;
        let start = window_start(limit.window);
        sqlx::query("DELETE FROM public_rate_hits WHERE bucket = $1 AND ip = $2 AND at <= $3")
            .bind(bucket)
            .bind(ip)
            .bind(start)
            .execute(&mut *tx)
            .await?;
        let (n, oldest): (i64, Option<DateTime<Utc>>) =
            sqlx::query_as("SELECT count(*), min(at) FROM public_rate_hits WHERE bucket = $1 AND ip = $2")
                .bind(bucket)
                .bind(ip)
                .fetch_one(&mut *tx)
                .await?;
        if n >= limit.max {
            tx.commit().await?;
            return Ok(Some(retry_after(oldest, limit.window)));
        }
        sqlx::query("INSERT INTO public_rate_hits (bucket, ip) VALUES ($1, $2)")
            .bind(bucket)
            .bind(ip)
            .execute(&mut *tx)
            .await?;
        // Addresses that never come back: prune now and then.
        if rand::rng().random_ratio(1, 200) {
            sqlx::query("DELETE FROM public_rate_hits WHERE at < now() - interval '1 day'").execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones() {
        assert_eq!(normalize_phone("138 1234 5678").unwrap(), "13812345678");
        assert_eq!(normalize_phone("+86 13812345678").unwrap(), "13812345678");
        assert_eq!(normalize_phone("0571-88886666").unwrap(), "0571-88886666");
        assert_eq!(normalize_phone("01088886666").unwrap(), "010-88886666");
        for bad in ["12812345678", "1381234567", "abc", "", "0571-0888666", "138123456789"] {
            assert_eq!(normalize_phone(bad).unwrap_err().field, "phone", "{bad}");
        }
        assert_eq!(mask_phone("13812345678"), "138****5678");
        assert_eq!(mask_phone("0571-88886666"), "0571-****6666");
    }

    #[test]
    fn id_numbers() {
        // The check character of 11010519491231002 is X (GB 11643's example).
        assert_eq!(id_check_char(b"11010519491231002"), b'X');
        assert_eq!(normalize_id_number("11010519491231002x").unwrap(), "11010519491231002X");
        assert!(normalize_id_number("110105194912310021").is_err());
        assert!(normalize_id_number("110105194913310021").is_err());
        assert!(normalize_id_number("1101051949123100").is_err());
        assert_eq!(mask_id_number("11010519491231002X"), "110105********002X");
    }

    #[test]
    fn tracking_numbers_and_names() {
        let no = new_tracking_no();
        assert_eq!(normalize_tracking_no(&no.to_lowercase()).as_deref(), Some(no.as_str()));
        assert_ne!(no, new_tracking_no());
        assert!(normalize_tracking_no("TS2026").is_none());
        assert_eq!(mask_name("张三丰"), "张**");
        assert_eq!(mask_name("李"), "*");
    }
}
