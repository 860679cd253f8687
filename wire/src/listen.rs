//! Listener addresses as the TOML configuration spells them. Here because wire is the one leaf
//! crate every tier depends on (broker, portal and the CLI's ops endpoint share this form).

use std::net::SocketAddr;

use serde::{de, Deserialize, Deserializer, Serializer};

/// `#[serde(with = "offsite_wire::listen")]` for an `Option<SocketAddr>`: an address, or
/// `"off"`, `"none"` or `""` for no listener.
pub fn serialize<S: Serializer>(v: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(a) => s.collect_str(a),
        None => s.serialize_str("off"),
    }
}

/// See [`serialize`].
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let v: Option<String> = Option::deserialize(d)?;
    match v.as_deref().map(str::trim) {
        None | Some("") | Some("off") | Some("none") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|e| de::Error::custom(format!("listen address {s:?}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct L {
        #[serde(with = "super", default)]
        at: Option<SocketAddr>,
    }

    #[test]
    fn off_or_an_address() {
        for off in [
            r#"{}"#,
            r#"{"at":null}"#,
            r#"{"at":""}"#,
            r#"{"at":"off"}"#,
            r#"{"at":" none "}"#,
        ] {
            assert_eq!(
                serde_json::from_str::<L>(off).unwrap(),
                L { at: None },
                "{off}"
            );
        }
        let l: L = serde_json::from_str(r#"{"at":"127.0.0.1:9100"}"#).unwrap();
        assert_eq!(l.at, Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(
            serde_json::to_string(&l).unwrap(),
            r#"{"at":"127.0.0.1:9100"}"#
        );
        assert_eq!(
            serde_json::to_string(&L { at: None }).unwrap(),
            r#"{"at":"off"}"#
        );
        let e = serde_json::from_str::<L>(r#"{"at":"nine"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"nine\""), "{e}");
    }
}
