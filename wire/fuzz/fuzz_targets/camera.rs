//! `CameraMessage::decode` on arbitrary bytes never panics; a message it accepts encodes into one
//! it accepts again, equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offsite_wire::CameraMessage;

fuzz_target!(|input: &[u8]| {
    let Ok(message) = CameraMessage::decode(input) else {
        return;
    };
    let bytes = message.encode();
    let back = CameraMessage::decode(&bytes).unwrap_or_else(|e| panic!("own encoding refused: {e}"));
    assert_eq!(back, message);
});
