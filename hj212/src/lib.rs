//! HJ 212-2017 packets: framing, CRC, lenient parsing, strict encoding. Facts: ../shared/design/hj212.md.
//!
//! Pure: no I/O and no async runtime, so the gateway, the edge agent's logger emulation and the fuzz
//! targets share exactly the same code. Lenient on what arrives (real loggers deviate), strict on what
//! is sent.

mod cp;
mod crc;
mod framer;
mod packet;
mod reassembler;
mod reply;
mod time;

pub use cp::{Cp, CpValue, DataFlag};
pub use crc::crc16;
pub use framer::{FrameError, Framer};
pub use packet::{Flag, Packet, ParseError, MAX_CP_LEN};
pub use reassembler::{Reassembler, MAX_PARTS};
pub use reply::{
    data_reply, execution_reply, request_reply, set_interval_request, set_time_request, ExeRtn,
    QnRtn, MAX_RTD_INTERVAL, MIN_RTD_INTERVAL,
};
pub use time::{beijing_to_utc, utc_to_beijing};

/// Largest data segment we accept (the standard says 1024; 9999 is what the 4-digit length allows).
pub const MAX_DATA_LEN: usize = 1024;
