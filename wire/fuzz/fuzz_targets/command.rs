//! The small platform <-> device messages on arbitrary bytes: `Command`, `CommandAck` (the
//! device's answer), `Ack` and `Status` never panic, and what decodes encodes and decodes equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offsite_wire::{Ack, Command, CommandAck, Status};

fuzz_target!(|input: &[u8]| {
    if let Ok(c) = Command::decode(input) {
        let back = Command::decode(&c.encode()).unwrap_or_else(|e| panic!("own command refused: {e}"));
        assert_eq!(back, c);
    }
    if let Ok(a) = CommandAck::decode(input) {
        let back = CommandAck::decode(&a.encode()).unwrap_or_else(|e| panic!("own answer refused: {e}"));
        assert_eq!(back, a);
    }
    if let Ok(a) = Ack::decode(input) {
        assert_eq!(Ack::decode(&a.encode()).expect("own ack"), a);
    }
    if let Ok(s) = Status::decode(input) {
        assert_eq!(Status::decode(&s.encode()).expect("own status"), s);
    }
});
