use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("empty identifier")]
    Empty,
    #[error("identifier longer than {0} characters")]
    TooLong(usize),
    #[error("identifier contains {0:?}; allowed: {1}")]
    BadChar(char, &'static str),
}

/// A device identifier: 1..=32 ASCII letters or digits.
///
/// The broker takes a TLS client's tenant from its certificate's O field and refuses anything that
/// is not alphanumeric, so the id must be exactly that alphabet to be usable as a tenant.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct DeviceId(String);

impl DeviceId {
    pub const MAX_LEN: usize = 32;

    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(IdError::TooLong(Self::MAX_LEN));
        }
        if let Some(c) = s.chars().find(|c| !c.is_ascii_alphanumeric()) {
            return Err(IdError::BadChar(c, "ASCII letters and digits"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for DeviceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", self.0)
    }
}

impl std::str::FromStr for DeviceId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A metric key such as `pm10`, `temp.inside` or HJ 212's `a34004-Rtd`: 1..=64 of `[A-Za-z0-9_.-]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct MetricKey(String);

impl MetricKey {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Result<Self, IdError> {
        Self::check(s)?;
        Ok(Self(s.to_owned()))
    }

    /// Validates without allocating; the hot ingest path calls this once per sample.
    pub fn check(s: &str) -> Result<(), IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(IdError::TooLong(Self::MAX_LEN));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            return Err(IdError::BadChar(c, "ASCII letters, digits, '_', '.', '-'"));
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for MetricKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for MetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MetricKey({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids() {
        assert!(DeviceId::parse("d7f3k2abc").is_ok());
        assert_eq!(DeviceId::parse(""), Err(IdError::Empty));
        assert!(matches!(DeviceId::parse("dev-1"), Err(IdError::BadChar('-', _))));
        assert!(matches!(DeviceId::parse("ä1"), Err(IdError::BadChar('ä', _))));
        assert!(DeviceId::parse(&"a".repeat(33)).is_err());
    }

    #[test]
    fn metric_keys() {
        assert!(MetricKey::parse("a34004-Rtd").is_ok());
        assert!(MetricKey::parse("temp.inside_1").is_ok());
        assert!(MetricKey::parse("a/b").is_err());
        assert!(MetricKey::parse("").is_err());
    }
}
