//! The unified social credit code (统一社会信用代码, GB 32100-2015): parsed once, valid after.
//!
//! 18 characters from `0123456789ABCDEFGHJKLMNPQRTUWXY` (no I, O, Z, S, V):
//! position 1 the registration authority (登记管理部门), 2 the entity type (机构类别), 3-8 the
//! administrative division (行政区划码), 9-17 the organization code (主体标识码), 18 the check
//! character: `31 - (Σ value × weight mod 31)`, 31 written as `0`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The code's alphabet; a character's value is its index.
pub const ALPHABET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";

/// Weights of positions 1..=17 (3^(i-1) mod 31).
pub const WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];

/// Registration authorities and the entity types each may register (GB 32100-2015 appendix A with
/// its amendment).
const AUTHORITIES: [(char, &str, &str, &str); 12] = [
    ('1', "1239", "机构编制", "institutional establishment"),
    ('2', "19", "外交", "foreign affairs"),
    ('3', "123459", "司法行政", "judicial administration"),
    ('4', "19", "文化", "culture"),
    ('5', "1239", "民政", "civil affairs"),
    ('6', "129", "旅游", "tourism"),
    ('7', "129", "宗教", "religious affairs"),
    ('8', "19", "工会", "trade unions"),
    ('9', "123", "工商", "market regulation"),
    ('A', "19", "中央军委改革和编制办公室", "military reform and establishment office"),
    ('N', "1239", "农业", "agriculture"),
    ('Y', "1", "其他", "other"),
];

fn value(c: char) -> Option<u32> {
    ALPHABET.find(c).map(|i| i as u32)
}

/// What is wrong with a string that is not a unified social credit code. Positions are 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreditCodeError {
    /// Not 18 characters (after trimming surrounding whitespace).
    WrongLength { len: usize },
    /// A lowercase letter: the code is written in capitals.
    Lowercase { position: usize, found: char },
    /// A character outside the alphabet (I, O, Z, S, V, punctuation, ...).
    BadCharacter { position: usize, found: char },
    /// Position 1 is not a registration authority code.
    BadAuthority { found: char },
    /// Position 2 is not an entity type of that registration authority.
    BadEntityType { authority: char, found: char },
    /// Positions 3-8 (the administrative division code) must be digits.
    BadDivision { position: usize, found: char },
    /// The 18th character does not match the other 17.
    WrongCheck { expected: char, found: char },
}

impl CreditCodeError {
    pub fn message_en(&self) -> String {
        match self {
            Self::WrongLength { len } => {
                format!("a unified social credit code has 18 characters, this one has {len}")
            }
            Self::Lowercase { position, found } => {
                format!("lowercase letter '{found}' at position {position}: the code is written in capital letters")
            }
            Self::BadCharacter { position, found } => format!(
                "bad character '{found}' at position {position}: only digits and capital letters other than I, O, Z, S, V are used"
            ),
            Self::BadAuthority { found } => format!(
                "bad registration authority code '{found}' at position 1 (expected one of 1-9, A, N, Y)"
            ),
            Self::BadEntityType { authority, found } => format!(
                "bad entity type '{found}' at position 2 for registration authority '{authority}' (expected one of {})",
                entity_types(*authority).unwrap_or("").chars().map(String::from).collect::<Vec<_>>().join(", ")
            ),
            Self::BadDivision { position, found } => format!(
                "bad character '{found}' at position {position}: positions 3-8 are the administrative division code, digits only"
            ),
            Self::WrongCheck { expected, found } => {
                format!("wrong check character '{found}' at position 18: expected '{expected}'")
            }
        }
    }

    pub fn message_zh(&self) -> String {
        match self {
            Self::WrongLength { len } => format!("统一社会信用代码应为18位，此代码为{len}位"),
            Self::Lowercase { position, found } => {
                format!("第{position}位为小写字母“{found}”，统一社会信用代码使用大写字母")
            }
            Self::BadCharacter { position, found } => {
                format!("第{position}位字符“{found}”无效：只允许数字和除 I、O、Z、S、V 以外的大写字母")
            }
            Self::BadAuthority { found } => {
                format!("第1位登记管理部门代码“{found}”无效（应为 1-9、A、N、Y 之一）")
            }
            Self::BadEntityType { authority, found } => format!(
                "第2位机构类别代码“{found}”与登记管理部门代码“{authority}”不符（应为 {} 之一）",
                entity_types(*authority).unwrap_or("").chars().map(String::from).collect::<Vec<_>>().join("、")
            ),
            Self::BadDivision { position, found } => {
                format!("第{position}位字符“{found}”无效：第3-8位为登记管理机关行政区划码，只能是数字")
            }
            Self::WrongCheck { expected, found } => {
                format!("第18位校验码错误：应为“{expected}”，实际为“{found}”")
            }
        }
    }
}

impl fmt::Display for CreditCodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message_en())
    }
}

impl std::error::Error for CreditCodeError {}

fn entity_types(authority: char) -> Option<&'static str> {
    AUTHORITIES.iter().find(|a| a.0 == authority).map(|a| a.1)
}

/// A valid unified social credit code (统一社会信用代码). Serialized as its 18-character string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CreditCode(String);

impl CreditCode {
    /// Parses a code; surrounding whitespace is ignored, everything else must be exact.
    pub fn parse(s: &str) -> Result<Self, CreditCodeError> {
        let s = s.trim();
        let chars: Vec<char> = s.chars().collect();
        if chars.len() != 18 {
            return Err(CreditCodeError::WrongLength { len: chars.len() });
        }
        let mut values = [0u32; 18];
        for (i, &c) in chars.iter().enumerate() {
            let position = i + 1;
            values[i] = match value(c) {
                Some(v) => v,
                None if c.is_lowercase() => return Err(CreditCodeError::Lowercase { position, found: c }),
                None => return Err(CreditCodeError::BadCharacter { position, found: c }),
            };
        }
        let types = entity_types(chars[0]).ok_or(CreditCodeError::BadAuthority { found: chars[0] })?;
        if !types.contains(chars[1]) {
            return Err(CreditCodeError::BadEntityType { authority: chars[0], found: chars[1] });
        }
        if let Some(i) = (2..8).find(|&i| !chars[i].is_ascii_digit()) {
            return Err(CreditCodeError::BadDivision { position: i + 1, found: chars[i] });
        }
        let expected = check_of(&values[..17]);
        if chars[17] != expected {
            return Err(CreditCodeError::WrongCheck { expected, found: chars[17] });
        }
        Ok(Self(s.to_owned()))
    }

    /// Completes the first 17 characters with their check character and parses the result.
    pub fn complete(first17: &str) -> Result<Self, CreditCodeError> {
        let first17 = first17.trim();
        let n = first17.chars().count();
        if n != 17 {
            return Err(CreditCodeError::WrongLength { len: n + 1 });
        }
        match Self::check_character(first17) {
            Some(c) => Self::parse(&format!("{first17}{c}")),
            // A bad character: let parse say where.
            None => Self::parse(&format!("{first17}0")),
        }
    }

    /// The check character of the first 17 characters; `None` unless they are 17 alphabet characters.
    pub fn check_character(first17: &str) -> Option<char> {
        let values: Vec<u32> = first17.chars().map(value).collect::<Option<_>>()?;
        (values.len() == 17).then(|| check_of(&values))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Position 1: the registration authority code (9 = market regulation / 工商).
    pub fn registration_authority(&self) -> char {
        self.0.as_bytes()[0] as char
    }

    /// Position 2: the entity type within the registration authority (91 = enterprise / 企业).
    pub fn entity_type(&self) -> char {
        self.0.as_bytes()[1] as char
    }

    /// Positions 3-8: the administrative division code of the registering office.
    pub fn division_code(&self) -> &str {
        &self.0[2..8]
    }

    /// Positions 9-17: the organization code (主体标识码).
    pub fn organization_code(&self) -> &str {
        &self.0[8..17]
    }

    /// The registration authority's name, in Chinese and English.
    pub fn authority_name(&self) -> (&'static str, &'static str) {
        let a = AUTHORITIES.iter().find(|a| a.0 == self.registration_authority()).expect("checked by parse");
        (a.2, a.3)
    }
}

fn check_of(values: &[u32]) -> char {
    let sum: u32 = values.iter().zip(WEIGHTS).map(|(v, w)| v * w).sum();
    let check = (31 - sum % 31) % 31;
    ALPHABET.as_bytes()[check as usize] as char
}

impl fmt::Display for CreditCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for CreditCode {
    type Err = CreditCodeError;
    fn from_str(s: &str) -> Result<Self, CreditCodeError> {
        Self::parse(s)
    }
}

impl TryFrom<String> for CreditCode {
    type Error = CreditCodeError;
    fn try_from(s: String) -> Result<Self, CreditCodeError> {
        Self::parse(&s)
    }
}

impl From<CreditCode> for String {
    fn from(c: CreditCode) -> String {
        c.0
    }
}

impl AsRef<str> for CreditCode {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

// Stored as text; a stored code is parsed again when read.
impl sqlx::Type<sqlx::Postgres> for CreditCode {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <String as sqlx::Type<sqlx::Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <String as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for CreditCode {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let s = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Ok(CreditCode::parse(s)?)
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for CreditCode {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as sqlx::Encode<sqlx::Postgres>>::encode_by_ref(&self.as_str(), buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_powers_of_three_mod_31() {
        let mut w = 1;
        for expected in WEIGHTS {
            assert_eq!(w, expected);
            w = w * 3 % 31;
        }
    }

    #[test]
    fn published_example_checks() {
        // 9*1 + 1*3 + 3*9 + 5*27 + 1*26 + M(21)*20 + 1*8 + Y(30)*30 + 4*28 = 1640; 1640 mod 31 = 28; 31 - 28 = 3.
        assert_eq!(CreditCode::check_character("91350100M000100Y4"), Some('3'));
        let c = CreditCode::parse("91350100M000100Y43").unwrap();
        assert_eq!((c.registration_authority(), c.entity_type(), c.division_code()), ('9', '1', "350100"));
        assert_eq!(c.organization_code(), "M000100Y4");
    }

    #[test]
    fn a_sum_divisible_by_31_checks_with_zero() {
        // Find a body whose weighted sum is 0 mod 31 by adjusting position 17.
        let body16 = "91330106MA2H0000";
        let c = (0..31)
            .map(|v| format!("{body16}{}", &ALPHABET[v..v + 1]))
            .find(|b| {
                let s: u32 = b.chars().map(|c| value(c).unwrap()).zip(WEIGHTS).map(|(v, w)| v * w).sum();
                matches!(s % 31, 0)
            })
            .unwrap();
        assert_eq!(CreditCode::check_character(&c), Some('0'));
    }
}
