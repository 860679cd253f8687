use crate::{crc16, Cp, MAX_DATA_LEN};

/// Largest CP content the standard allows in one packet; longer data must be split (PNUM/PNO).
pub const MAX_CP_LEN: usize = 950;

/// Flag field: bit 0 A (reply wanted), bit 1 D (split packet), bits 2..7 version (1 = 2017, 0 = 2005).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub u8);

impl Flag {
    pub fn reply_wanted(self) -> bool {
        self.0 & 1 != 0
    }
    pub fn split(self) -> bool {
        self.0 & 2 != 0
    }
    pub fn version(self) -> u8 {
        self.0 >> 2
    }
}

/// One packet's data segment, parsed leniently (QN, ST, PW, Flag may be missing).
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// As sent, YYYYMMDDhhmmsszzz (Beijing time); never `Some("")` after parsing.
    pub qn: Option<String>,
    pub st: Option<String>,
    /// Required.
    pub cn: String,
    pub pw: Option<String>,
    /// Required, any length 1..=64 of [A-Za-z0-9_-].
    pub mn: String,
    pub flag: Option<Flag>,
    pub pnum: Option<u32>,
    pub pno: Option<u32>,
    /// The text between "CP=&&" and the closing "&&".
    pub cp: String,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ParseError {
    #[error("data segment is not UTF-8")]
    NotUtf8,
    #[error("field {0} is missing")]
    MissingField(&'static str),
    #[error("field {field} has a bad value {value:?}")]
    BadField { field: String, value: String },
    #[error("bad CP: {0}")]
    BadCp(String),
    #[error("field {field} is not a number: {value:?}")]
    BadNumber { field: String, value: String },
    #[error("bad time {0:?} (want YYYYMMDDhhmmss[zzz], Beijing time)")]
    BadTime(String),
    #[error("data segment of {0} bytes is over the limit")]
    TooLong(usize),
    #[error("bad split packet: {0}")]
    BadSplit(String),
}

impl ParseError {
    /// Stable label for a Prometheus counter.
    pub fn as_str(&self) -> &'static str {
        match self {
            ParseError::NotUtf8 => "not_utf8",
            ParseError::MissingField(_) => "missing_field",
            ParseError::BadField { .. } => "bad_field",
            ParseError::BadCp(_) => "bad_cp",
            ParseError::BadNumber { .. } => "bad_number",
            ParseError::BadTime(_) => "bad_time",
            ParseError::TooLong(_) => "too_long",
            ParseError::BadSplit(_) => "bad_split",
        }
    }
}

const CP_OPEN: &str = "CP=&&";
const CP_CLOSE: &str = "&&";

impl Packet {
    /// Parses a data segment (what `Framer::next_frame` yields). Unknown header fields are ignored;
    /// empty QN/ST/PW/Flag count as missing.
    pub fn parse(data_segment: &[u8]) -> Result<Packet, ParseError> {
        let text = std::str::from_utf8(data_segment).map_err(|_| ParseError::NotUtf8)?;
        let cp_at = find_cp_open(text).ok_or(ParseError::MissingField("CP"))?;
        let rest = &text[cp_at + CP_OPEN.len()..];
        let cp = rest
            .strip_suffix(CP_CLOSE)
            .ok_or_else(|| ParseError::BadCp("not closed by \"&&\" at the end".into()))?;

        let (mut qn, mut st, mut cn, mut pw, mut mn) = (None, None, None, None, None);
        let (mut flag, mut pnum, mut pno) = (None, None, None);
        for item in text[..cp_at].split(';').filter(|item| !item.is_empty()) {
            let (key, value) = item.split_once('=').ok_or_else(|| ParseError::BadField {
                field: item.to_string(),
                value: String::new(),
            })?;
            let owned = (!value.is_empty()).then(|| value.to_string());
            match key {
                "QN" => qn = owned,
                "ST" => st = owned,
                "CN" => cn = owned,
                "PW" => pw = owned,
                "MN" => mn = owned,
                "Flag" => {
                    flag = owned
                        .map(|v| number::<u8>("Flag", &v).map(Flag))
                        .transpose()?
                }
                "PNUM" => pnum = owned.map(|v| number::<u32>("PNUM", &v)).transpose()?,
                "PNO" => pno = owned.map(|v| number::<u32>("PNO", &v)).transpose()?,
                // Lenient: vendors add fields of their own.
                _ => {}
            }
        }
        let cn = cn.ok_or(ParseError::MissingField("CN"))?;
        check_cn(&cn)?;
        let mn = mn.ok_or(ParseError::MissingField("MN"))?;
        check_mn(&mn)?;
        Ok(Packet {
            qn,
            st,
            cn,
            pw,
            mn,
            flag,
            pnum,
            pno,
            cp: cp.to_string(),
        })
    }

    /// The whole frame ("##" + 4-digit length + data + upper-case CRC + "\r\n"), fields in standard order, only
    /// those present; strict: refuses (Err) anything that would exceed MAX_DATA_LEN.
    pub fn encode(&self) -> Result<Vec<u8>, ParseError> {
        let data = self.data_segment()?;
        let mut frame = Vec::with_capacity(data.len() + 12);
        frame.extend_from_slice(format!("##{:04}", data.len()).as_bytes());
        frame.extend_from_slice(data.as_bytes());
        frame.extend_from_slice(format!("{:04X}\r\n", crc16(data.as_bytes())).as_bytes());
        Ok(frame)
    }

    /// The data segment `encode` frames, after the same strict checks.
    pub fn data_segment(&self) -> Result<String, ParseError> {
        check_cn(&self.cn)?;
        check_mn(&self.mn)?;
        let mut data = String::with_capacity(64 + self.cp.len());
        for (key, value) in [("QN", &self.qn), ("ST", &self.st)] {
            push_text_field(&mut data, key, value.as_deref())?;
        }
        push_text_field(&mut data, "CN", Some(&self.cn))?;
        push_text_field(&mut data, "PW", self.pw.as_deref())?;
        push_text_field(&mut data, "MN", Some(&self.mn))?;
        if let Some(flag) = self.flag {
            data.push_str(&format!("Flag={};", flag.0));
        }
        if let Some(pnum) = self.pnum {
            data.push_str(&format!("PNUM={pnum};"));
        }
        if let Some(pno) = self.pno {
            data.push_str(&format!("PNO={pno};"));
        }
        data.push_str(CP_OPEN);
        data.push_str(&self.cp);
        data.push_str(CP_CLOSE);
        if data.len() > MAX_DATA_LEN {
            return Err(ParseError::TooLong(data.len()));
        }
        Ok(data)
    }

    /// Flag bit A: the sender waits for a reply (9014 for data, 9011 for requests).
    pub fn reply_wanted(&self) -> bool {
        self.flag.is_some_and(Flag::reply_wanted)
    }

    pub fn parse_cp(&self) -> Result<Cp, ParseError> {
        Cp::parse(&self.cp)
    }
}

/// "CP=&&" at the start of a field (so a header value that happens to hold the text is not taken for it).
fn find_cp_open(text: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = text[from..].find(CP_OPEN) {
        let at = from + found;
        if at == 0 || text.as_bytes()[at - 1] == b';' {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

fn number<T: std::str::FromStr>(field: &str, value: &str) -> Result<T, ParseError> {
    // Only plain digits: FromStr would also take "+5", which would not encode back the same.
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadNumber {
            field: field.into(),
            value: value.into(),
        });
    }
    value.parse().map_err(|_| ParseError::BadNumber {
        field: field.into(),
        value: value.into(),
    })
}

fn bad_field(field: &str, value: &str) -> ParseError {
    ParseError::BadField {
        field: field.into(),
        value: value.into(),
    }
}

fn check_cn(cn: &str) -> Result<(), ParseError> {
    if cn.is_empty() || cn.len() > 8 || !cn.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_field("CN", cn));
    }
    Ok(())
}

fn check_mn(mn: &str) -> Result<(), ParseError> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    if mn.is_empty() || mn.len() > 64 || !mn.bytes().all(allowed) {
        return Err(bad_field("MN", mn));
    }
    Ok(())
}

/// Strict: a value that is empty or holds ';' would not parse back as the same field.
fn push_text_field(out: &mut String, key: &str, value: Option<&str>) -> Result<(), ParseError> {
    if let Some(value) = value {
        if value.is_empty() || value.contains(';') {
            return Err(bad_field(key, value));
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
        out.push(';');
    }
    Ok(())
}
