//! `decode_batch` on arbitrary bytes never panics; a batch it accepts re-encodes (as the edge
//! agent sends it, epoch milliseconds) into bytes it accepts again with the same content.
#![no_main]

use chrono::{DateTime, SubsecRound, TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use offsite_wire::{decode_batch, encode_batch, Limits, MAX_SAMPLES_PER_BATCH};

fuzz_target!(|input: &[u8]| {
    // The first byte picks small or production-sized limits, so both refusal paths are reached.
    let Some((&pick, payload)) = input.split_first() else {
        return;
    };
    let now: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    let limits = if pick & 1 == 0 {
        Limits {
            max_bytes: 256 * 1024,
            max_samples: MAX_SAMPLES_PER_BATCH,
            not_before: now - chrono::Duration::days(400),
            not_after: now + chrono::Duration::seconds(300),
        }
    } else {
        Limits {
            max_bytes: usize::from(pick) * 8,
            max_samples: usize::from(pick >> 4),
            not_before: now - chrono::Duration::days(1),
            not_after: now,
        }
    };
    let Ok(batch) = decode_batch(payload, &limits) else {
        return;
    };
    assert!(batch.samples.len() <= limits.max_samples);
    assert!(batch.samples.iter().all(|s| s.ts >= limits.not_before && s.ts <= limits.not_after));
    let again = encode_batch(&batch);
    // Re-encoding may be larger than the original (epoch milliseconds, no whitespace saved).
    let roomy = Limits { max_bytes: usize::MAX, ..limits };
    let back = decode_batch(&again, &roomy).unwrap_or_else(|e| panic!("own encoding refused: {e}"));
    assert_eq!(back.seq, batch.seq);
    assert_eq!(back.samples.len(), batch.samples.len());
    for (a, b) in back.samples.iter().zip(&batch.samples) {
        assert_eq!(a.metric, b.metric);
        assert_eq!(a.value.to_bits(), b.value.to_bits(), "{} vs {}", a.value, b.value);
        // Milliseconds on the wire: finer digits of an RFC 3339 time are truncated.
        assert_eq!(a.ts, b.ts.trunc_subsecs(3));
    }
});
