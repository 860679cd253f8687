//! Packet::parse and parse_cp on arbitrary bytes never panic; a packet that parses and encodes
//! frames and parses back equal (what we send is what we read).
#![no_main]

use libfuzzer_sys::fuzz_target;
use offsite_hj212::{Framer, Packet, MAX_DATA_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Packet::parse(data) else {
        return;
    };
    let _ = packet.parse_cp();
    let Ok(frame) = packet.encode() else { return };
    let mut framer = Framer::new(MAX_DATA_LEN);
    framer.push(&frame);
    let segment = match framer.next_frame() {
        Some(Ok(segment)) => segment,
        other => panic!("own frame did not frame: {other:?}"),
    };
    assert!(framer.next_frame().is_none());
    assert_eq!(framer.pending(), 0);
    assert_eq!(Packet::parse(&segment).as_ref(), Ok(&packet));
});
