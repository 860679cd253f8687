//! Arbitrary bytes pushed in arbitrary chunks: the Framer never panics, and once drained it holds
//! less than one whole frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offsite_hj212::{Framer, Packet, MAX_DATA_LEN};

fuzz_target!(|input: &[u8]| {
    // The first byte picks a frame limit (small ones reach the oversized path more often), the
    // second seeds the chunk sizes.
    let Some((&limit, rest)) = input.split_first() else {
        return;
    };
    let Some((&seed, mut bytes)) = rest.split_first() else {
        return;
    };
    let max_data_len = if limit & 1 == 0 {
        MAX_DATA_LEN
    } else {
        usize::from(limit) * 4
    };
    let mut framer = Framer::new(max_data_len);
    let bound = framer.max_frame_len();
    let mut chunk = usize::from(seed % 17) + 1;
    while !bytes.is_empty() {
        let (now, later) = bytes.split_at(chunk.min(bytes.len()));
        bytes = later;
        framer.push(now);
        while let Some(frame) = framer.next_frame() {
            if let Ok(data) = frame {
                assert!(data.len() <= max_data_len);
                let _ = Packet::parse(&data);
            }
        }
        assert!(
            framer.pending() < bound,
            "pending {} >= {bound}",
            framer.pending()
        );
        chunk = (chunk * 7 + 3) % 31 + 1;
    }
});
