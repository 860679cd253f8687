//! HJ 212-2017 packets: framing, CRC, lenient parsing, strict encoding. Facts: ../shared/design/hj212.md.
//!
//! Pure: no I/O and no async runtime, so the gateway, the edge agent's logger emulation and the fuzz
//! targets share exactly the same code. Lenient on what arrives (real loggers deviate), strict on what
//! is sent.
//!
//! A server's read loop: push what arrived, drain every frame, answer what asks for an answer.
//! ```
//! use offsite_hj212::{data_reply, Framer, Packet, MAX_DATA_LEN};
//!
//! let mut framer = Framer::new(MAX_DATA_LEN);
//! framer.push(b"noise##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&1C80\r\n");
//! let mut replies = Vec::new();
//! while let Some(frame) = framer.next_frame() {
//!     match frame.map_err(|e| e.as_str()).and_then(|d| Packet::parse(&d).map_err(|e| e.as_str())) {
//!         Ok(p) if p.reply_wanted() => replies.push(data_reply(&p).encode().unwrap()),
//!         Ok(_) => {}
//!         Err(reason) => assert_eq!(reason, "garbage"), // count it, log it, go on
//!     }
//! }
//! assert_eq!(replies.len(), 1);
//! // Less than one frame is held between reads: the slow-loris guard.
//! assert!(framer.pending() < framer.max_frame_len());
//! ```

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
