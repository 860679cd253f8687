//! The portal's JSON and query inputs on arbitrary bytes: the request types of the main write
//! routes and the rule parser never panic (a rule they accept also validates), list filters parse
//! or refuse, and the NUL check (`has_nul_escape`) agrees exactly with what a JSON parser sees.
#![no_main]

use axum::extract::Query;
use axum::http::Uri;
use libfuzzer_sys::fuzz_target;
use offsite_portal::extract::has_nul_escape;
use offsite_portal::routes::{
    auth, cameras, cases, notifications, registers, rules, silences, tasks, triage,
};
use serde_json::Value;

fn holds_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(holds_nul),
        Value::Object(o) => o.iter().any(|(k, x)| k.contains('\0') || holds_nul(x)),
        _ => false,
    }
}

fuzz_target!(|input: &[u8]| {
    // The first byte picks the type, so one corpus serves all of them.
    let Some((&pick, json)) = input.split_first() else {
        return;
    };
    if let Ok(v) = serde_json::from_slice::<Value>(json) {
        assert_eq!(has_nul_escape(json), holds_nul(&v), "NUL check disagrees with the parser");
    }
    match pick % 14 {
        0 => {
            if let Ok(v) = serde_json::from_slice::<Value>(json) {
                if let Ok(rule) = rules::parse_rule(v) {
                    assert!(rule.validate().is_ok(), "parse_rule accepted an invalid rule: {rule:?}");
                }
            }
        }
        1 => drop(serde_json::from_slice::<auth::LoginBody>(json)),
        2 => drop(serde_json::from_slice::<auth::PasswordBody>(json)),
        3 => drop(serde_json::from_slice::<cameras::ZonesBody>(json)),
        4 => drop(serde_json::from_slice::<cases::AdvanceBody>(json)),
        5 => drop(serde_json::from_slice::<notifications::NewChannelBody>(json)),
        6 => drop(serde_json::from_slice::<notifications::ChannelChangeBody>(json)),
        7 => drop(serde_json::from_slice::<silences::SilenceBody>(json)),
        8 => drop(serde_json::from_slice::<silences::MaintenanceBody>(json)),
        9 => drop(serde_json::from_slice::<tasks::CreateBody>(json)),
        10 => drop(serde_json::from_slice::<triage::DispatchBody>(json)),
        11 => drop(serde_json::from_slice::<offsite_store::NewObject>(json)),
        12 => drop(serde_json::from_slice::<registers::RegionsBody>(json)),
        _ => {
            // A list filter as a query string.
            let Ok(q) = std::str::from_utf8(json) else { return };
            let Ok(uri) = format!("/?{q}").parse::<Uri>() else { return };
            let _ = Query::<tasks::ListParams>::try_from_uri(&uri);
            let _ = Query::<cases::ListQuery>::try_from_uri(&uri);
            let _ = Query::<registers::ObjectQuery>::try_from_uri(&uri);
        }
    }
});
